package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestHealthAndHTTP(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("grpc health %q = %v, %v; want SERVING", svc, resp.GetStatus(), err)
		}
	}
	tests := []struct {
		path, wantType string
	}{
		{path: "/healthz", wantType: "text/plain"},
		{path: "/readyz", wantType: "text/plain"},
		{path: "/metrics", wantType: "text/plain"},
	}
	for _, tt := range tests {
		resp, err := http.Get("http://" + s.httpAddr + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.wantType) {
			t.Errorf("GET %s = %d %s", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestSIGTERMDrains sends SIGTERM while a delayed admission (the tier's
// max_delay) is in flight: the Check must complete with OK, new Checks are
// refused, and the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	// sloane may make 1 call per 5s window (epoch-aligned) and wait up to 6s.
	// Start early in a window so the second call waits for seconds.
	if into := time.Duration(time.Now().UnixNano()) % (5 * time.Second); into > 2*time.Second {
		time.Sleep(5*time.Second - into + 50*time.Millisecond)
	}
	req := envoyRequest{path: "/v1/things", method: "GET", headers: map[string]string{"x-user-id": "sloane"}}
	if resp := s.check(t, req); resp.GetOkResponse() == nil {
		t.Fatalf("first call refused: %v", resp)
	}
	type result struct {
		resp    *authv3.CheckResponse
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.client.Check(ctx, req.checkRequest())
		done <- result{resp, err, time.Since(start)}
	}()
	time.Sleep(500 * time.Millisecond) // the delayed Check is now waiting inside quotagate
	select {
	case r := <-done:
		t.Fatalf("second call was not delayed: %v %v after %v", r.resp, r.err, r.elapsed)
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: readiness turns 503 while the delayed Check is still in flight.
	waitFor(t, 2*time.Second, func() bool {
		resp, err := http.Get("http://" + s.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	r := <-done
	if r.err != nil || r.resp.GetOkResponse() == nil {
		t.Fatalf("in-flight delayed Check during drain: %v, %v", r.resp, r.err)
	}
	if r.elapsed < time.Second {
		t.Errorf("delayed Check answered after %v; expected it to wait for the next window", r.elapsed)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("quotagate did not exit after draining")
	}
	if s.exitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", s.exitErr)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"draining"`) {
		t.Errorf("no draining log line")
	}
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runBinary runs quotagate with args and returns its output and exit code.
func runBinary(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestStartErrorsAreOneLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("quota_manager:\n  tiers:\n    freemium:\n      api_calls_per_hour: -5\n      priority: urgent\n"), 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad config", args: []string{"serve", "--config", bad, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, want: "api_calls_per_hour"},
		{name: "missing config", args: []string{"serve", "--config", "/nonexistent.yaml"}, want: "/nonexistent.yaml"},
		{name: "port in use", args: []string{"serve", "--grpc-addr", busy.Addr().String(), "--http-addr", "127.0.0.1:0"}, want: "--grpc-addr"},
		{name: "unknown flag", args: []string{"serve", "--grcp-addr", ":1"}, want: "grcp-addr"},
		{name: "unknown command", args: []string{"serv"}, want: `"serv"`},
		{name: "config validate on a bad file", args: []string{"config", "validate", bad}, want: "api_calls_per_hour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runBinary(t, nil, tt.args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr %q", stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			var errLines []string
			for _, l := range lines {
				if !strings.HasPrefix(l, "{") { // JSON log lines are not the error
					errLines = append(errLines, l)
				}
			}
			if tt.name != "config validate on a bad file" && len(errLines) != 1 {
				t.Errorf("want one error line, got %d:\n%s", len(errLines), stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.want)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(binary, "serve", "--config", "testdata/quota.yaml")
	cmd.Env = append(os.Environ(), "QUOTAGATE_GRPC_ADDR="+grpcAddr, "QUOTAGATE_HTTP_ADDR="+httpAddr, "QUOTAGATE_LOG_LEVEL=warn")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	conn, err := net.Dial("tcp", grpcAddr)
	if err != nil {
		t.Fatalf("gRPC not on QUOTAGATE_GRPC_ADDR: %v", err)
	}
	conn.Close()
}

// TestHTTPAuthorizationListener drives --authz-http-addr with the
// forward-auth convention (as Caddy forward_auth sends it).
func TestHTTPAuthorizationListener(t *testing.T) {
	authzAddr := freeAddr(t)
	s := startServer(t, "testdata/quota.yaml", "--authz-http-addr", authzAddr)
	if !strings.Contains(s.stdout.String(), "http://"+authzAddr) {
		t.Errorf("startup output does not name the authorization listener:\n%s", s.stdout)
	}
	tests := []struct {
		name       string
		user       string
		action     string
		body       string
		wantStatus int
		wantCost   string
	}{
		{name: "allow with word cost", user: "sam", action: "translate", body: words(3000), wantStatus: 200, wantCost: "15"},
		{name: "no identity", user: "", action: "translate", wantStatus: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", "http://"+authzAddr+"/?action="+tt.action, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-Method", "POST")
			req.Header.Set("X-Forwarded-Uri", "/v1/translate")
			req.Header.Set("X-Forwarded-Host", "api.example.com")
			if tt.user != "" {
				req.Header.Set("X-User-Id", tt.user)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("X-Quota-Cost") != tt.wantCost {
				t.Errorf("status %d cost %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Quota-Cost"), tt.wantStatus, tt.wantCost)
			}
		})
	}
}
