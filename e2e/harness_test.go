package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/quotagate/quotagate/e2e/freeport"
	"github.com/quotagate/quotagate/telemetry/logtest"
)

// binary is the quotagate binary TestMain built.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quotagate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "quotagate")
	build := exec.Command("go", "build", "-o", binary, "../cmd/quotagate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/quotagate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running quotagate serve process.
type server struct {
	cmd            *exec.Cmd
	grpcAddr       string
	httpAddr       string
	stdout, stderr *logtest.Buffer
	exited         chan struct{}
	exitErr        error
	conn           *grpc.ClientConn
	client         authv3.AuthorizationClient
}

// freeAddr returns a loopback address for the server to listen on.
func freeAddr(t *testing.T) string {
	t.Helper()
	// Not port 0: another package's socket could take it before the
	// server binds it (see freeport.Port).
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startServer starts quotagate serve with the config file (empty for the
// embedded default) and waits until /readyz answers 200.
func startServer(t *testing.T, configPath string, args ...string) *server {
	t.Helper()
	s := &server{grpcAddr: freeAddr(t), httpAddr: freeAddr(t), stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, exited: make(chan struct{})}
	all := []string{"serve", "--grpc-addr", s.grpcAddr, "--http-addr", s.httpAddr, "--log-level", "debug"}
	if configPath != "" {
		all = append(all, "--config", configPath)
	}
	s.cmd = exec.Command(binary, append(all, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("quotagate stdout:\n%s\nquotagate stderr:\n%s", s.stdout, s.stderr)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("quotagate exited before it was ready: %v\nstderr: %s", s.exitErr, s.stderr)
		default:
		}
		resp, err := http.Get("http://" + s.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("quotagate not ready after 15s: %v\nstderr: %s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The process wrote its banner and listening log before it began
	// serving, but exec copies each pipe on its own goroutine: wait for both
	// so that tests reading them never race the copy.
	for !strings.Contains(s.stdout.String(), "try: ") || !strings.Contains(s.stderr.String(), "quotagate listening") {
		if time.Now().After(deadline) {
			t.Fatalf("quotagate ready but no \"try:\" line in stdout or no listening log after 15s:\n%s\n%s", s.stdout, s.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.conn, s.client = conn, authv3.NewAuthorizationClient(conn)
	return s
}

// signal sends sig and returns the exit error once the process exits.
func (s *server) stop(t *testing.T, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(within):
		t.Fatalf("quotagate still running %s after %v", within, sig)
		return nil
	}
}

// envoyRequest describes one request as it reaches Envoy.
type envoyRequest struct {
	method, path string
	headers      map[string]string
	body         string
	action       string
	workflow     string
	jwtClaims    map[string]any
	principal    string
}

var requestSeq atomic.Int64

// checkRequest builds the CheckRequest exactly as Envoy's ext_authz HTTP
// filter sends it with with_request_body, include_peer_certificate and
// jwt_authn's payload_in_metadata: the full AttributeContext, pseudo
// headers, x-request-id and traceparent, the body, the route's
// context_extensions and the jwt_authn filter metadata.
func (r envoyRequest) checkRequest() *authv3.CheckRequest {
	seq := requestSeq.Add(1)
	reqID := fmt.Sprintf("4f2c8a0e-1b7d-4e3a-9c55-%012d", seq)
	method := r.method
	if method == "" {
		method = "POST"
	}
	h := map[string]string{
		":authority": "api.example.com", ":method": method, ":path": r.path, ":scheme": "https",
		"user-agent": "e2e/1.0", "accept": "application/json", "x-forwarded-proto": "https",
		"x-request-id": reqID, "traceparent": fmt.Sprintf("00-4bf92f3577b34da6a3ce929d%06d-00f067aa0ba902b7-01", seq%1000000),
	}
	if r.body != "" {
		h["content-type"] = "text/plain; charset=utf-8"
		h["content-length"] = strconv.Itoa(len(r.body))
	}
	for k, v := range r.headers {
		h[k] = v
	}
	attrs := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: sockAddr("203.0.113.7", 51234), Principal: r.principal},
		Destination: &authv3.AttributeContext_Peer{Address: sockAddr("10.0.0.2", 8443),
			Principal: "spiffe://cluster.local/ns/default/sa/api"},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: strconv.FormatInt(seq, 10), Method: method, Headers: h, Path: r.path,
				Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2", Size: int64(len(r.body)), Body: r.body,
			},
		},
	}
	if r.action != "" || r.workflow != "" {
		attrs.ContextExtensions = map[string]string{}
		if r.action != "" {
			attrs.ContextExtensions["action"] = r.action
		}
		if r.workflow != "" {
			attrs.ContextExtensions["workflow"] = r.workflow
		}
	}
	if r.jwtClaims != nil {
		payload, err := structpb.NewStruct(r.jwtClaims)
		if err != nil {
			panic(err)
		}
		attrs.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.filters.http.jwt_authn": {Fields: map[string]*structpb.Value{"jwt_payload": structpb.NewStructValue(payload)}},
		}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// check sends r and fails the test on a transport error.
func (s *server) check(t *testing.T, r envoyRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, r.checkRequest())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// headers returns the client-side headers of a response: response headers
// to add for an allow, the denial's headers otherwise.
func headers(resp *authv3.CheckResponse) map[string]string {
	opts := resp.GetDeniedResponse().GetHeaders()
	if ok := resp.GetOkResponse(); ok != nil {
		opts = ok.GetResponseHeadersToAdd()
	}
	return headerMap(opts)
}

func headerMap(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}
