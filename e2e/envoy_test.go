package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRealEnvoy runs the proxy scenarios of TestProxies through a real
// Envoy calling quotagate over gRPC ext_authz, configured by the bootstrap
// that `quotagate envoy-config --bootstrap` generates. It is opt-in: set
// ENVOY_BIN to an envoy binary. This is the e2e suite's one skip: no Envoy
// can be installed on this project's CI machines (Debian does not package
// it and nothing but the package registries is reachable there).
func TestRealEnvoy(t *testing.T) {
	bin := os.Getenv("ENVOY_BIN")
	if bin == "" {
		t.Skip("ENVOY_BIN is not set: the real-Envoy suite is opt-in, since no Envoy binary can be installed on CI machines; run ENVOY_BIN=/path/to/envoy go test ./e2e -run TestRealEnvoy")
	}
	s := startServer(t, "testdata/proxy.yaml")
	up := startUpstream(t)
	listen := freeAddr(t)
	_, port, _ := strings.Cut(listen, ":")
	out, errOut, code := runBinary(t, nil, "envoy-config", "--bootstrap", "--config", "testdata/proxy.yaml",
		"--address", s.grpcAddr, "--upstream-address", up.addr(), "--listen-port", port, "--timeout", "2s")
	if code != 0 {
		t.Fatalf("quotagate envoy-config --bootstrap: exit %d\n%s", code, errOut)
	}
	// The generated listener binds every interface; the test keeps to
	// loopback.
	boot := strings.ReplaceAll(out, "address: 0.0.0.0", "address: 127.0.0.1")
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(boot), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runEnvoy(t, bin, "--mode", "validate", "-c", path); code != 0 {
		t.Fatalf("envoy --mode validate rejects the generated bootstrap:\n%s\n%s", errOut, boot)
	}
	p := startProc(t, "envoy", exec.Command(bin, "-c", path, "--use-dynamic-base-id", "--concurrency", "1", "--log-level", "warn"))
	p.waitTCP(t, listen, 30*time.Second)
	f := proxyFront{name: "envoy", url: "http://" + listen, up: up, seesBody: true, costToClient: true}
	waitEnvoyAuthorizes(t, f)
	t.Run("health route bypasses ext_authz", func(t *testing.T) {
		// No identity: quotagate would answer 401 if it were asked.
		if resp, body := proxyDo(t, f, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
			t.Errorf("GET /healthz = %d %s, want 200 from the upstream", resp.StatusCode, body)
		}
	})
	waitOutsideHourEdge()
	runProxyScenarios(t, f)
	t.Run("allowed responses carry the RateLimit headers", func(t *testing.T) {
		resp, body := proxyDo(t, f, "GET", "/v1/things", "", map[string]string{"X-User-Id": "sam"})
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Policy") != `"hour";q=100;w=3600` ||
			resp.Header.Get("X-Quota-Decision-Id") == "" {
			t.Errorf("status %d headers %v body %q", resp.StatusCode, resp.Header, body)
		}
	})
}

// runEnvoy runs envoy to completion (for --mode validate).
func runEnvoy(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--use-dynamic-base-id")...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), 0
}

// waitEnvoyAuthorizes waits until Envoy's quotagate cluster answers: the
// first Checks may fail with 503 while Envoy connects and health-checks
// it. The calls use their own subject, so the scenarios start clean.
func waitEnvoyAuthorizes(t *testing.T, f proxyFront) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		resp, body := proxyDo(t, f, "GET", "/v1/things", "", map[string]string{"X-User-Id": "warmup-" + strconv.Itoa(i)})
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Envoy still answers %d %q after 20s; quotagate unreachable through it?", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
