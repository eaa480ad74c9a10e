package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/quotagate/quotagate/cmd/noopauthz/noop"
)

// TestSmokeAgainstNoop runs loadgen for about a second against the no-op
// server on loopback, in process, and checks the JSON it prints.
func TestSmokeAgainstNoop(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := noop.NewGRPCServer(noop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	var out, errOut strings.Builder
	args := []string{
		"--name", "noop", "--addr", lis.Addr().String(), "--conns", "2", "--concurrency", "8",
		"--warmup", "200ms", "--duration", "1s", "--server-pid", strconv.Itoa(os.Getpid()), "--json",
	}
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("loadgen: %v\nstderr: %s", err, errOut.String())
	}
	var r Result
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("output is not a JSON Result: %v\n%s", err, out.String())
	}
	if r.Checks == 0 || r.OK != r.Checks || r.Denied != 0 || r.Errors != 0 {
		t.Errorf("checks %d, ok %d, denied %d, errors %d: want only OKs", r.Checks, r.OK, r.Denied, r.Errors)
	}
	if r.WindowSec < 0.9 || r.ChecksPerSec <= 0 {
		t.Errorf("window %.2fs at %.0f checks/s", r.WindowSec, r.ChecksPerSec)
	}
	l := r.Latency
	if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	if r.ServerCPUPerCheck <= 0 || len(r.ServerPIDs) != 1 {
		t.Errorf("server CPU per Check %.2f µs for pids %v; want > 0 for this process", r.ServerCPUPerCheck, r.ServerPIDs)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad pid", args: []string{"--server-pid", "abc"}, want: `--server-pid: "abc" is not a process id`},
		{name: "no addr", args: []string{"--addr", " , "}, want: "--addr is empty"},
		{name: "zero conns", args: []string{"--conns", "0"}, want: "--conns and --concurrency must be > 0"},
		{name: "stray argument", args: []string{"extra"}, want: `unexpected argument "extra"`},
		{name: "table without result", args: []string{"table", "/nonexistent.json"}, want: "loadgen: table:"},
		{name: "otlp-sink stray argument", args: []string{"otlp-sink", "extra"}, want: `otlp-sink: unexpected argument "extra"`},
		{name: "otlp-sink bad address", args: []string{"otlp-sink", "--addr", "127.0.0.1:notaport"}, want: "loadgen: otlp-sink:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) error = %v, want one containing %q", tt.args, err, tt.want)
			}
		})
	}
}

// subjectCounter is an Authorization server that counts the Checks of
// each subject (x-user-id) and allows them all.
type subjectCounter struct {
	authv3.UnimplementedAuthorizationServer
	mu   sync.Mutex
	seen map[string]int
}

func (s *subjectCounter) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.seen[req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-user-id"]]++
	s.mu.Unlock()
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// TestPrime: with --prime, every server has answered a Check of every
// user before the warm-up begins.
func TestPrime(t *testing.T) {
	const users = 300
	var servers [2]*subjectCounter
	var addrs []string
	for i := range servers {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = &subjectCounter{seen: map[string]int{}}
		g := grpc.NewServer()
		authv3.RegisterAuthorizationServer(g, servers[i])
		go g.Serve(lis)
		t.Cleanup(g.Stop)
		addrs = append(addrs, lis.Addr().String())
	}
	w, err := newWorkload(workloadConfig{Users: users, FreeUsers: 2, FreeShare: 0.05, Seed: 1, MaxBodyBytes: 65536})
	if err != nil {
		t.Fatal(err)
	}
	clients, closeAll, err := dial(addrs, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if err := prime(context.Background(), w, clients[:len(addrs)], 8); err != nil {
		t.Fatalf("prime: %v", err)
	}
	for i, s := range servers {
		s.mu.Lock()
		for u := range users {
			if n := s.seen[userID(u)]; n != 1 {
				t.Errorf("server %d saw %s %d times, want once", i, userID(u), n)
			}
		}
		s.mu.Unlock()
	}
}
