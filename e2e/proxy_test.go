package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The proxy tests run real Caddy (forward_auth) and nginx (auth_request)
// in front of a recording upstream, each pointed at quotagate's HTTP
// authorization listener, and talk to the proxy with a plain HTTP client,
// as an API's caller would. The proxy configurations are the recipes in
// envoy/README.md, read from it, so the documentation is what is tested.
//
// Neither proxy sends the request body to the authorization service:
// Caddy's forward_auth always rewrites the check to a GET, which drops the
// body (a reverse_proxy of the body would consume it before the upstream
// could read it), and nginx's auth_request subrequest never carries one.
// So behind them an action is charged its per-call price only, which
// TestProxies shows; the word count of a body is priced when Envoy (gRPC
// with_request_body, or http_service) sends it, which
// TestHTTPServiceWordCost shows on the HTTP listener.

// proxyFront is a running proxy in front of the upstream.
type proxyFront struct {
	name string
	url  string // http://host:port
	up   *upstream
	// rebuilt is true when the proxy rebuilds denial bodies from the
	// status (the nginx recipe), so only error, message and decision_id
	// are quotagate's.
	rebuilt bool
	// seesBody is true when the proxy sends the request body to quotagate
	// (Envoy's with_request_body), so words are priced; forward-auth
	// proxies charge the per-call price only.
	seesBody bool
	// rateLimitToClient is true when an allowed call returns RateLimit and
	// RateLimit-Policy to the client (Envoy and the nginx recipe).
	rateLimitToClient bool
	// costToClient is true when X-Quota-Cost comes back to the client
	// (Envoy's response_headers_to_add) rather than going to the
	// upstream (the proxies' copy_headers / proxy_set_header).
	costToClient bool
}

func TestProxies(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T, authzAddr string) proxyFront
	}{
		{name: "caddy forward_auth", start: startCaddy},
		{name: "nginx auth_request", start: startNginx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authzAddr := freeAddr(t)
			startServer(t, "testdata/proxy.yaml", "--authz-http-addr", authzAddr)
			f := tt.start(t, authzAddr)
			waitOutsideHourEdge()
			runProxyScenarios(t, f)
		})
	}
}

// proxyScenarios are the decisions every front must carry to a plain HTTP
// client: run in order against one quotagate, each with its own subject.
var proxyScenarios = []struct {
	name string
	run  func(t *testing.T, f proxyFront)
}{
	{name: "allow, with the upstream seeing quotagate's headers", run: scenarioAllow},
	{name: "429 with the JSON body and Retry-After", run: scenarioTooMany},
	{name: "402 for a balance", run: scenarioBalance},
	{name: "401 for no identity", run: scenarioNoIdentity},
	{name: "the word-count cost of a POST body", run: scenarioWordCost},
}

func runProxyScenarios(t *testing.T, f proxyFront) {
	for _, sc := range proxyScenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, f) })
	}
}

// scenarioAllow: an allowed call reaches the upstream with quotagate's
// decision id and tier, and not with the client's own tier header.
func scenarioAllow(t *testing.T, f proxyFront) {
	// The client's own X-Quota-Tier must not reach the upstream.
	resp, body := proxyDo(t, f, "GET", "/v1/translate/languages", "", map[string]string{"X-User-Id": "ann", "X-Quota-Tier": "enterprise", "X-Tier": "enterprise"})
	if resp.StatusCode != 200 || body != "upstream ok\n" {
		t.Fatalf("status %d body %q, want 200 from the upstream", resp.StatusCode, body)
	}
	if f.rateLimitToClient {
		if rl, pol := resp.Header.Get("RateLimit"), resp.Header.Get("RateLimit-Policy"); !strings.Contains(rl, ";r=") || !strings.Contains(pol, ";q=") {
			t.Errorf("client got RateLimit %q and RateLimit-Policy %q on an allowed call, want quotagate's", rl, pol)
		}
	}
	got := f.up.last(t)
	// X-Tier is in identity.strip_headers: the client's claim must not
	// reach the upstream.
	if v := got.header.Values("X-Tier"); len(v) != 0 {
		t.Errorf("upstream got the client's X-Tier %q; strip_headers must not reach it", v)
	}
	if id := got.header.Get("X-Quota-Decision-Id"); len(id) != 36 {
		t.Errorf("upstream X-Quota-Decision-Id = %q, want a UUID", id)
	}
	if tier := got.header.Values("X-Quota-Tier"); len(tier) != 1 || tier[0] != "freemium" {
		t.Errorf("upstream X-Quota-Tier = %q, want only quotagate's freemium", tier)
	}
}

// scenarioTooMany: the 11th freemium call of the hour is refused with 429,
// the JSON body, Retry-After and RateLimit-Policy, and is not proxied.
func scenarioTooMany(t *testing.T, f proxyFront) {
	rex := map[string]string{"X-User-Id": "rex"}
	for i := 1; i <= 10; i++ {
		if resp, body := proxyDo(t, f, "GET", "/v1/translate/languages", "", rex); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
	}
	before := f.up.count()
	resp, body := proxyDo(t, f, "GET", "/v1/translate/languages", "", rex)
	d := checkDenial(t, f, resp, body, 429, "quota_exceeded")
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 3600 {
		t.Errorf("Retry-After = %q, want 1..3600 seconds", resp.Header.Get("Retry-After"))
	}
	if !f.rebuilt && (d.RetryAfterSeconds != int64(retry) || d.Limit != 10 || d.Remaining != 0) {
		t.Errorf("body %s does not match Retry-After %d and the hourly limit 10", body, retry)
	}
	if p := resp.Header.Get("RateLimit-Policy"); p != `"hour";q=10;w=3600` {
		t.Errorf("RateLimit-Policy = %q", p)
	}
	if f.up.count() != before {
		t.Errorf("the refused request reached the upstream")
	}
}

// scenarioBalance: a call the balance cannot pay for is refused with 402.
func scenarioBalance(t *testing.T, f proxyFront) {
	bob := map[string]string{"X-User-Id": "bob"} // 3 tokens; an empty translate costs 1 per call
	for i := 1; i <= 3; i++ {
		if resp, body := proxyDo(t, f, "POST", "/v1/translate", "", bob); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := proxyDo(t, f, "POST", "/v1/translate", "", bob)
	checkDenial(t, f, resp, body, 402, "insufficient_balance")
}

// scenarioNoIdentity: a call without an identity is refused with 401.
func scenarioNoIdentity(t *testing.T, f proxyFront) {
	resp, body := proxyDo(t, f, "GET", "/v1/translate/languages", "", nil)
	checkDenial(t, f, resp, body, 401, "unauthenticated")
}

// scenarioWordCost: a POST body reaches the upstream whole, and is priced
// by its words only where the front sends it to quotagate.
func scenarioWordCost(t *testing.T, f proxyFront) {
	text := words(3000)
	resp, body := proxyDo(t, f, "POST", "/v1/translate", text, map[string]string{"X-User-Id": "sam"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	got := f.up.last(t)
	if got.body != text {
		t.Errorf("upstream got a %d-byte body, want the client's %d bytes", len(got.body), len(text))
	}
	// 1 token per call + 5 per 1000 words: 16 when quotagate sees the
	// body, the per-call 1 behind forward-auth, which sends none.
	want, cost := "1", got.header.Get("X-Quota-Cost")
	if f.seesBody {
		want = "16"
	}
	if f.costToClient {
		cost = resp.Header.Get("X-Quota-Cost")
	}
	if cost != want {
		t.Errorf("X-Quota-Cost = %q, want %s", cost, want)
	}
}

// denialBody is the JSON body of a refusal.
type denialBody struct {
	Error             string `json:"error"`
	Message           string `json:"message"`
	DecisionID        string `json:"decision_id"`
	Limit             int64  `json:"limit"`
	Remaining         int64  `json:"remaining"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
}

// checkDenial checks a refusal's status, content type and JSON body, and
// that its decision id matches the header.
func checkDenial(t *testing.T, f proxyFront, resp *http.Response, body string, status int, code string) denialBody {
	t.Helper()
	var d denialBody
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if d.Error != code || d.Message == "" {
		t.Errorf("body %s, want error %q and a message", body, code)
	}
	if status != 401 && (d.DecisionID == "" || d.DecisionID != resp.Header.Get("X-Quota-Decision-Id")) {
		t.Errorf("decision_id %q, header X-Quota-Decision-Id %q: want the same id", d.DecisionID, resp.Header.Get("X-Quota-Decision-Id"))
	}
	return d
}

// proxyDo sends one request through the proxy and returns the response
// with its body read.
func proxyDo(t *testing.T, f proxyFront, method, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s through %s: %v", method, path, f.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// readmeRecipe returns envoy/README.md's code block for lang with the
// documentation's host names replaced by the test's addresses.
func readmeRecipe(t *testing.T, lang, authzAddr, upstreamAddr string) string {
	t.Helper()
	block := markdownBlock(t, filepath.Join(repoRoot(t), "envoy", "README.md"), lang)
	for _, host := range []string{"quotagate:8181", "app:8080"} {
		if !strings.Contains(block, host) {
			t.Fatalf("envoy/README.md's %s recipe no longer mentions %s; update this test with it", lang, host)
		}
	}
	return strings.NewReplacer("quotagate:8181", authzAddr, "app:8080", upstreamAddr).Replace(block)
}

// startCaddy runs Caddy with the README's forward_auth recipe.
func startCaddy(t *testing.T, authzAddr string) proxyFront {
	t.Helper()
	bin := findTool(t, "caddy.sh", filepath.Join(repoRoot(t), ".cache", "bin", "caddy"), "caddy")
	up := startUpstream(t)
	listen := freeAddr(t)
	site := readmeRecipe(t, "caddyfile", authzAddr, up.addr())
	if !strings.HasPrefix(site, "api.example.com {") {
		t.Fatalf("envoy/README.md's caddyfile recipe no longer starts with the api.example.com site:\n%s", site)
	}
	site = "http://" + listen + strings.TrimPrefix(site, "api.example.com")
	dir := t.TempDir()
	conf := filepath.Join(dir, "Caddyfile")
	global := "{\n\tadmin off\n\tpersist_config off\n}\n\n"
	if err := os.WriteFile(conf, []byte(global+site), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	p := startProc(t, "caddy", cmd)
	p.waitTCP(t, listen, 15*time.Second)
	return proxyFront{name: "caddy", url: "http://" + listen, up: up}
}

// startNginx runs nginx with the README's auth_request recipe, which
// rebuilds the 429 and 402 answers that auth_request cannot pass through.
func startNginx(t *testing.T, authzAddr string) proxyFront {
	t.Helper()
	bin := findTool(t, "nginx.sh", "nginx", "/usr/sbin/nginx")
	up := startUpstream(t)
	listen := freeAddr(t)
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // the workers write temp files under dir, which only root may
	}
	conf := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
daemon off;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    server {
        listen %[3]s;
        location / {
            return 404;
        }
%[4]s
    }
}
`, user, dir, listen, readmeRecipe(t, "nginx", authzAddr, up.addr()))
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "nginx", exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path))
	p.waitTCP(t, listen, 15*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", log)
		}
	})
	return proxyFront{name: "nginx", url: "http://" + listen, up: up, rebuilt: true, rateLimitToClient: true}
}

// TestHTTPServiceWordCost prices a POST body's words on the HTTP listener
// with a request shaped as Envoy's http_service sends it (the original
// method, path, headers and body; no X-Forwarded-Uri), the path to word
// counting over HTTP that the forward-auth proxies above cannot take.
func TestHTTPServiceWordCost(t *testing.T) {
	authzAddr := freeAddr(t)
	startServer(t, "testdata/proxy.yaml", "--authz-http-addr", authzAddr)
	tests := []struct {
		name     string
		body     string
		wantCost string
	}{
		{name: "3000 words", body: words(3000), wantCost: "16"}, // 1 per call + 5 per 1000 words
		{name: "1001 words round up", body: words(1001), wantCost: "7"},
		{name: "no body", body: "", wantCost: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", "http://"+authzAddr+"/v1/translate?to=fr", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-User-Id", "sam")
			req.Header.Set("Content-Type", "text/plain")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Quota-Cost") != tt.wantCost {
				t.Errorf("status %d X-Quota-Cost %q, want 200 and %s", resp.StatusCode, resp.Header.Get("X-Quota-Cost"), tt.wantCost)
			}
		})
	}
}
