package e2e

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

// TestServeDefaultListensOnLoopback starts `quotagate serve` with no flags
// and no QUOTAGATE_* variables, as a newcomer would: the embedded demo
// configuration trusts x-user-id, so it must listen on 127.0.0.1 only.
func TestServeDefaultListensOnLoopback(t *testing.T) {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QUOTAGATE_") {
			env = append(env, kv)
		}
	}
	var stdout, stderr *logtest.Buffer
	// The ports are fixed (9191 and 8080); another test run on this
	// machine may hold them for a moment, so retry a few times.
	for attempt := 0; ; attempt++ {
		stdout, stderr = &logtest.Buffer{}, &logtest.Buffer{}
		cmd := exec.Command(binary, "serve")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() { cmd.Process.Kill(); <-exited }
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(stdout.String(), "try: ") && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Now()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if strings.Contains(stdout.String(), "try: ") {
			defer stop()
			break
		}
		stop()
		if !strings.Contains(stderr.String(), "address already in use") || attempt == 20 {
			t.Fatalf("quotagate serve did not start:\nstdout: %s\nstderr: %s", stdout, stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	out := stdout.String()
	if !strings.Contains(out, "ext_authz gRPC on 127.0.0.1:9191, health and metrics on http://127.0.0.1:8080") {
		t.Errorf("serve with no flags announces other addresses than 127.0.0.1:9191 and 127.0.0.1:8080:\n%s", out)
	}
	if strings.Contains(out, "WARNING") || strings.Contains(stderr.String(), "EXPOSED") {
		t.Errorf("the loopback demo warns that it is exposed:\n%s\n%s", out, stderr)
	}
	for _, port := range []string{"9191", "8080"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err != nil {
			t.Errorf("nothing answers on 127.0.0.1:%s: %v", port, err)
		} else {
			c.Close()
		}
		// Every address of this host that is not loopback must refuse.
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			target := net.JoinHostPort(ipn.IP.String(), port)
			if c, err := net.DialTimeout("tcp", target, time.Second); err == nil {
				c.Close()
				t.Errorf("serve with no flags accepts connections on %s, beyond loopback", target)
			}
		}
	}
}

// TestServeWarnsWhenExposed checks the startup warning of a configuration
// that trusts an identity header and listens beyond loopback, and that
// `config validate` prints the same warning.
func TestServeWarnsWhenExposed(t *testing.T) {
	wild := freeAddr(t)
	_, port, _ := net.SplitHostPort(wild)
	s := startServer(t, "", "--grpc-addr", "0.0.0.0:"+port)
	if !strings.Contains(s.stdout.String(), "WARNING: identity.header.trusted is true and quotagate listens beyond loopback on 0.0.0.0:"+port) {
		t.Errorf("no prominent warning on stdout:\n%s", s.stdout)
	}
	if !strings.Contains(s.stderr.String(), `"level":"WARN","msg":"EXPOSED: identity.header.trusted is true`) {
		t.Errorf("no WARN log line about the exposure:\n%s", s.stderr)
	}

	cfg := strings.Replace(defaultConfig(t), `grpc_addr: "127.0.0.1:9191"`, `grpc_addr: ":9191"`, 1)
	path := t.TempDir() + "/exposed.yaml"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBinary(t, nil, "config", "validate", path)
	if code != 0 || !strings.Contains(errOut, "WARNING: identity.header.trusted is true and quotagate listens beyond loopback on :9191") {
		t.Errorf("config validate: exit %d, stderr:\n%s\nwant the exposure warning", code, errOut)
	}
	def := t.TempDir() + "/default.yaml"
	if err := os.WriteFile(def, []byte(defaultConfig(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runBinary(t, nil, "config", "validate", def); code != 0 || strings.Contains(errOut, "WARNING") {
		t.Errorf("config validate of the loopback default: exit %d, stderr:\n%s\nwant no exposure warning", code, errOut)
	}
}

// defaultConfig is `quotagate config default`.
func defaultConfig(t *testing.T) string {
	t.Helper()
	out, errOut, code := runBinary(t, nil, "config", "default")
	if code != 0 {
		t.Fatalf("config default: exit %d: %s", code, errOut)
	}
	return out
}
