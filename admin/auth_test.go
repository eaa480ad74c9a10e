package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// serveFrom sends a request to f's handler as if from remote (ip:port).
func (f *fixture) serveFrom(remote, method, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remote
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestAuthFailureRateLimit checks that failures are counted per presented
// token and, with a higher ceiling, per address, and that neither ever
// refuses a valid token: an attacker behind an operator's address (one
// ingress) cannot lock the operator out.
func TestAuthFailureRateLimit(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: Config{AuthFailuresPerMinute: 3, AuthFailuresPerAddressPerMinute: 6}})
	const attacker, other = "192.0.2.7:40000", "192.0.2.8:40000"
	valid := tokenSecret("read")
	steps := []struct {
		name, remote, token string
		advance             time.Duration
		code                int
	}{
		{name: "1st wrong token", remote: attacker, token: "guess-a", code: 401},
		{name: "2nd time the same wrong token", remote: attacker, token: "guess-a", code: 401},
		{name: "3rd time the same wrong token", remote: attacker, token: "guess-a", code: 401},
		{name: "that token is blocked", remote: attacker, token: "guess-a", code: 429},
		{name: "a valid token from the same address is served", remote: attacker, token: valid, code: 200},
		{name: "another wrong token is counted on its own", remote: attacker, token: "guess-b", code: 401},
		{name: "no token counts (5th failure of the address)", remote: attacker, code: 401},
		{name: "6th failure of the address", remote: attacker, token: "guess-c", code: 401},
		{name: "the address is at its ceiling", remote: attacker, token: "guess-d", code: 429},
		{name: "a valid token from the blocked address is served", remote: attacker, token: valid, code: 200},
		{name: "another address is not blocked", remote: other, token: "guess-e", code: 401},
		{name: "the blocked token is blocked from any address", remote: other, token: "guess-a", code: 429},
		{name: "still blocked 59s later", remote: attacker, token: "guess-f", advance: 59 * time.Second, code: 429},
		{name: "the window has ended", remote: attacker, token: "guess-f", advance: time.Second, code: 401},
		{name: "a right token does not count", remote: attacker, token: valid, code: 200},
		{name: "IPv6 /64 counts as one address (1)", remote: "[2001:db8::1]:1", token: "x1", code: 401},
		{name: "IPv6 /64 counts as one address (2)", remote: "[2001:db8::2]:1", token: "x2", code: 401},
		{name: "IPv6 /64 counts as one address (3)", remote: "[2001:db8::3]:1", token: "x3", code: 401},
		{name: "IPv6 /64 counts as one address (4)", remote: "[2001:db8::4]:1", token: "x4", code: 401},
		{name: "IPv6 /64 counts as one address (5)", remote: "[2001:db8::5]:1", token: "x5", code: 401},
		{name: "IPv6 /64 counts as one address (6)", remote: "[2001:db8::6]:1", token: "x6", code: 401},
		{name: "IPv6 /64 blocked", remote: "[2001:db8::7]:1", token: "x7", code: 429},
		{name: "IPv6 /64 blocked, but a valid token is served", remote: "[2001:db8::8]:1", token: valid, code: 200},
	}
	for _, st := range steps {
		f.clock.Advance(st.advance)
		rec := f.serveFrom(st.remote, "GET", "/v1/tiers", st.token)
		if rec.Code != st.code {
			t.Fatalf("%s: = %d %s; want %d", st.name, rec.Code, rec.Body, st.code)
		}
		if st.code == 429 && (!strings.Contains(rec.Body.String(), "retry in") || rec.Header().Get("Retry-After") == "") {
			t.Errorf("%s: 429 (Retry-After %q) body %s does not say when to retry", st.name, rec.Header().Get("Retry-After"), rec.Body)
		}
		if st.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", st.name)
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, "guess-") || strings.Contains(logs, "qg-test-") {
		t.Errorf("a token reached the log:\n%s", logs)
	}
	if !strings.Contains(f.logs.String(), "authentication failed") {
		t.Errorf("failed authentications were not logged")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newFailLimiter(1, time.Minute)
	for i := range maxTrackedClients + 100 {
		l.fail(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String(), t0)
	}
	if n := len(l.clients); n > maxTrackedClients {
		t.Errorf("limiter tracks %d clients; want at most %d", n, maxTrackedClients)
	}
}

func TestTokenLookup(t *testing.T) {
	ts := newTokenSet(testTokens())
	tests := []struct {
		name, secret string
		want         principal
		ok           bool
	}{
		{name: "read", secret: tokenSecret("read"), want: principal{name: "read", scope: ScopeRead}, ok: true},
		{name: "team admin", secret: tokenSecret("blue-admin"), want: principal{name: "blue-admin", scope: ScopeAdmin, team: "blue"}, ok: true},
		{name: "unknown", secret: "nope"},
		{name: "the hash is not the token", secret: HashToken(tokenSecret("read"))},
		{name: "empty", secret: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ts.lookup(tc.secret)
			if ok != tc.ok || got != tc.want {
				t.Errorf("lookup = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBearer(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"Bearer abc", "abc"}, {"bearer  abc ", "abc"}, {"Basic abc", ""}, {"Bearer", ""}, {"Bearer ", ""}, {"", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", tc.header)
		if got, _ := bearer(r); got != tc.want {
			t.Errorf("bearer(%q) = %q; want %q", tc.header, got, tc.want)
		}
	}
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, err := engine.New(engineRules(), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func TestNoTokensOnlyOnLoopback(t *testing.T) {
	eng := newEngine(t)
	tokens := testTokens()
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "all interfaces", cfg: Config{Addr: "0.0.0.0:8081"}, wantErr: true},
		{name: "empty host", cfg: Config{Addr: ":8081"}, wantErr: true},
		{name: "public address", cfg: Config{Addr: "192.0.2.1:8081"}, wantErr: true},
		{name: "IPv6 any", cfg: Config{Addr: "[::]:8081"}, wantErr: true},
		{name: "127.0.0.1", cfg: Config{Addr: "127.0.0.1:8081"}},
		{name: "::1", cfg: Config{Addr: "[::1]:8081"}},
		{name: "localhost", cfg: Config{Addr: "localhost:8081"}},
		{name: "no address yet", cfg: Config{}},
		{name: "tokens on all interfaces", cfg: Config{Addr: "0.0.0.0:8081", Tokens: tokens}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Config: tc.cfg, Engine: eng})
			if tc.wantErr != (err != nil) {
				t.Fatalf("New = %v; want error %v", err, tc.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrNoTokens) || !strings.Contains(err.Error(), "admin.tokens") ||
				!strings.Contains(err.Error(), "127.0.0.1")) {
				t.Errorf("error %q does not say to add admin.tokens or bind to 127.0.0.1", err)
			}
		})
	}
	s, err := New(Options{Config: Config{}, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), "0.0.0.0:0"); !errors.Is(err, ErrNoTokens) {
		t.Errorf("Run on 0.0.0.0 without tokens = %v; want ErrNoTokens", err)
	}
}

// TestOpenModeServesLoopbackOnly runs a token-less server on loopback and
// checks that it serves local clients and refuses others.
func TestOpenModeServesLoopbackOnly(t *testing.T) {
	s, err := New(Options{Config: Config{}, Engine: newEngine(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v1/capacity")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v1/capacity from loopback without tokens = %d; want 200", resp.StatusCode)
	}
	req := httptest.NewRequest("GET", "/v1/capacity", nil)
	req.RemoteAddr = "192.0.2.7:5000"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("GET from 192.0.2.7 without tokens = %d; want 403", rec.Code)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve after cancel = %v; want nil", err)
	}
}

// TestShutdownEndsStreams checks that Serve returns promptly when its
// context ends, although a dashboard stream never goes idle.
func TestShutdownEndsStreams(t *testing.T) {
	s, err := New(Options{Engine: newEngine(t), Config: Config{Tokens: testTokens()}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tokenSecret("read"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/stream = %d; want 200", resp.StatusCode)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve = %v; want nil", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Serve did not return within 4s of cancel with a stream open")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Serve took %s to shut down with a stream open", d)
	}
}

func TestConfigValidate(t *testing.T) {
	const pasted = "my-very-secret-token"
	good := TokenConfig{Name: "ops", SHA256: HashToken("x"), Scopes: []Scope{ScopeRead}}
	tests := []struct {
		name string
		cfg  Config
		// path and problem are the FieldError wanted; path "" means valid.
		path, problem string
	}{
		{name: "valid", cfg: Config{Addr: "127.0.0.1:8081", Tokens: []TokenConfig{good}, TraceURL: "https://tempo.example/explore?traceId={trace_id}"}},
		{name: "raw token instead of hash", cfg: Config{Tokens: []TokenConfig{{Name: "ops", SHA256: pasted, Scopes: []Scope{ScopeRead}}}},
			path: "tokens[0].sha256", problem: "must be 64 hex digits"},
		{name: "duplicate name", cfg: Config{Tokens: []TokenConfig{good, good}}, path: "tokens[1].name", problem: `duplicate name "ops"`},
		{name: "no name", cfg: Config{Tokens: []TokenConfig{{SHA256: good.SHA256, Scopes: good.Scopes}}}, path: "tokens[0].name", problem: "must not be empty"},
		{name: "no scopes", cfg: Config{Tokens: []TokenConfig{{Name: "a", SHA256: good.SHA256}}}, path: "tokens[0].scopes", problem: "must list at least one"},
		{name: "bad addr", cfg: Config{Addr: "8081"}, path: "addr", problem: "must be host:port"},
		{name: "trace url scheme", cfg: Config{TraceURL: "javascript:alert(1)//{trace_id}"}, path: "trace_url", problem: "must be an http or https URL"},
		{name: "trace url placeholder", cfg: Config{TraceURL: "https://jaeger.example/trace/"}, path: "trace_url", problem: "must contain {trace_id}"},
		{name: "half TLS", cfg: Config{TLS: TLSConfig{CertFile: "c.pem"}}, path: "tls", problem: "cert_file and key_file"},
		{name: "client CA without TLS", cfg: Config{TLS: TLSConfig{ClientCAFile: "ca.pem"}}, path: "tls.client_ca_file", problem: "requires cert_file"},
		{name: "negative failures", cfg: Config{AuthFailuresPerMinute: -1}, path: "auth_failures_per_minute", problem: "must be >= 0, got -1"},
		{name: "negative address failures", cfg: Config{AuthFailuresPerAddressPerMinute: -2}, path: "auth_failures_per_address_per_minute", problem: "got -2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			fes := engine.FieldErrors(err)
			if !errors.Is(err, ErrInvalidConfig) || len(fes) != 1 || fes[0].Path != tc.path || !strings.Contains(fes[0].Problem, tc.problem) {
				t.Fatalf("Validate = %v (field errors %v); want an ErrInvalidConfig with one FieldError at %q containing %q", err, fes, tc.path, tc.problem)
			}
			if strings.Contains(err.Error(), pasted) {
				t.Errorf("the error repeats a secret: %v", err)
			}
		})
	}
}

func TestTokenScopes(t *testing.T) {
	c := Config{Tokens: []TokenConfig{{Name: "ops", SHA256: HashToken("x"), Scopes: []Scope{ScopeRead, ScopeAdmin}, Team: "blue"}},
		TLS: TLSConfig{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}, TraceURL: "https://t.example/{trace_id}"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := newTokenSet(c.Tokens).tokens[0].p; p != (principal{name: "ops", scope: ScopeAdmin, team: "blue"}) {
		t.Errorf("token = %+v; want ops, admin, blue", p)
	}
	if _, err := ParseScope("root"); err == nil || !strings.Contains(err.Error(), "want read, write or admin") {
		t.Errorf("unknown scope: %v; want an error naming the scopes", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9191": true, "[::1]:9191": true, "localhost:9191": true, "LocalHost:1": true, "127.1.2.3:1": true,
		":9191": false, "0.0.0.0:9191": false, "[::]:9191": false, "10.0.0.1:9191": false, "example.com:9191": false, "9191": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
