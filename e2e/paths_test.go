package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPathSpellingsArePriced sends spellings of /v1/translate and
// /v1/summarize that Envoy's path normalization maps to the routed path,
// through gRPC and the HTTP authorization mode of the embedded default
// configuration, with no context_extensions (the catch-all route): every
// spelling is priced as its route, never as a free plain call.
func TestPathSpellingsArePriced(t *testing.T) {
	authzAddr := freeAddr(t)
	s := startServer(t, "", "--authz-http-addr", authzAddr)
	body := strings.Repeat("bonjour ", 3000) // translate: 15 tokens
	tests := []struct {
		name, user, path string
		wantStatus       int
		wantCost         string
		wantError        string
	}{
		{name: "plain", user: "demo-standard", path: "/v1/translate", wantStatus: 200, wantCost: "15"},
		{name: "encoded letter", user: "demo-standard", path: "/v1/%74ranslate", wantStatus: 200, wantCost: "15"},
		{name: "leading double slash", user: "demo-standard", path: "//v1/translate", wantStatus: 200, wantCost: "15"},
		{name: "inner double slash", user: "demo-standard", path: "/v1//translate", wantStatus: 200, wantCost: "15"},
		{name: "dot segment", user: "demo-standard", path: "/v1/./translate", wantStatus: 200, wantCost: "15"},
		{name: "encoded dot-dot", user: "demo-standard", path: "/v1/x/%2e%2E/translate", wantStatus: 200, wantCost: "15"},
		{name: "escaped slash", user: "demo-standard", path: "/v1%2Ftranslate", wantStatus: 200, wantCost: "15"},
		{name: "query does not count", user: "demo-standard", path: "/v1/translate?a=/../b", wantStatus: 200, wantCost: "15"},
		{name: "freemium is refused summarize however spelt", user: "demo-free", path: "/v1/%73ummarize", wantStatus: 403, wantError: "feature_not_in_plan"},
		{name: "case is another path: a plain call", user: "demo-standard", path: "/V1/translate", wantStatus: 200, wantCost: ""},
	}
	for _, tt := range tests {
		t.Run("grpc/"+tt.name, func(t *testing.T) {
			resp := s.check(t, envoyRequest{path: tt.path, body: body, headers: map[string]string{"x-user-id": tt.user}})
			status := 200
			if d := resp.GetDeniedResponse(); d != nil {
				status = int(d.GetStatus().GetCode())
			}
			h := headers(resp)
			if status != tt.wantStatus || h["x-quota-cost"] != tt.wantCost ||
				(tt.wantError != "" && !strings.Contains(resp.GetDeniedResponse().GetBody(), `"error":"`+tt.wantError+`"`)) {
				t.Errorf("%s: status %d cost %q body %s; want %d %q %s", tt.path, status, h["x-quota-cost"],
					resp.GetDeniedResponse().GetBody(), tt.wantStatus, tt.wantCost, tt.wantError)
			}
		})
		t.Run("http/"+tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", "http://"+authzAddr+"/", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Forwarded-Method", "POST")
			req.Header.Set("X-Forwarded-Uri", tt.path)
			req.Header.Set("X-User-Id", tt.user)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("X-Quota-Cost") != tt.wantCost ||
				(tt.wantError != "" && !strings.Contains(string(b), `"error":"`+tt.wantError+`"`)) {
				t.Errorf("%s: status %d cost %q body %s; want %d %q %s", tt.path, resp.StatusCode, resp.Header.Get("X-Quota-Cost"),
					b, tt.wantStatus, tt.wantCost, tt.wantError)
			}
		})
	}
}

// TestUnroutedAndUnknownActions runs a configuration with routes.default:
// deny and an action typo in its routes table: a path no rule matches is
// refused with 403 no_route, the typo with 403 unknown_action and a neutral
// message, the operator gets one WARN per action name, and `config
// validate` flags the typo.
func TestUnroutedAndUnknownActions(t *testing.T) {
	cfg := strings.Replace(defaultConfig(t), "  default: call\n", "  default: deny\n", 1)
	cfg = strings.Replace(cfg, "    - {path_prefix: /v1/summarize, method: POST, action: summarize}\n",
		"    - {path_prefix: /v1/summarize, method: POST, action: summarize}\n    - {path_prefix: /v1/transl8, method: POST, action: transl8}\n", 1)
	path := filepath.Join(t.TempDir(), "quota.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBinary(t, nil, "config", "validate", path)
	if code != 0 || !strings.Contains(out, "transl8") || !strings.Contains(out, "NO PRICE and in no features list") ||
		!strings.Contains(errOut, `name action "transl8", which quota_manager.actions does not price`) {
		t.Errorf("config validate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	s := startServer(t, path)
	body := strings.Repeat("bonjour ", 3000)
	tests := []struct {
		name, path, action string
		wantStatus         int
		wantError          string
	}{
		{name: "routed", path: "/v1//translate", wantStatus: 200},
		{name: "unrouted is refused", path: "/v2/translate", wantStatus: 403, wantError: "no_route"},
		{name: "case is another path, refused", path: "/V1/translate", wantStatus: 403, wantError: "no_route"},
		{name: "a typo in the routes table", path: "/v1/transl8", wantStatus: 403, wantError: "unknown_action"},
		{name: "a typo in context_extensions", path: "/v1/translate", action: "transl8", wantStatus: 403, wantError: "unknown_action"},
		{name: "again: logged once", path: "/v1/translate", action: "transl8", wantStatus: 403, wantError: "unknown_action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.check(t, envoyRequest{path: tt.path, body: body, action: tt.action, headers: map[string]string{"x-user-id": "demo-enterprise"}})
			status := 200
			if d := resp.GetDeniedResponse(); d != nil {
				status = int(d.GetStatus().GetCode())
			}
			b := resp.GetDeniedResponse().GetBody()
			if status != tt.wantStatus || (tt.wantError != "" && !strings.Contains(b, `"error":"`+tt.wantError+`"`)) {
				t.Fatalf("%s: status %d body %s; want %d %s", tt.path, status, b, tt.wantStatus, tt.wantError)
			}
			if tt.wantError == "unknown_action" && (strings.Contains(b, "transl8") || strings.Contains(b, "plan")) {
				t.Errorf("the client's message names the action or a plan: %s", b)
			}
		})
	}
	if n := strings.Count(s.stderr.String(), `"msg":"extauthz: action \"transl8\" has no price`); n != 1 {
		t.Errorf("%d WARN lines about transl8, want exactly 1:\n%s", n, s.stderr)
	}
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	counted := false
	for _, l := range strings.Split(string(m), "\n") {
		counted = counted || strings.HasPrefix(l, "quota_unknown_actions_total{") && strings.Contains(l, `outcome="deny"`) && strings.HasSuffix(l, "} 3")
	}
	if !counted {
		t.Errorf("no quota_unknown_actions_total{outcome=\"deny\"} 3 in /metrics")
	}
}

// TestOversizedCheckIsLoggedAndCounted sends Checks around a 1 MiB
// server.max_receive_bytes: under it, a decision; over it, gRPC refuses the
// message unread, and quotagate logs it and counts it.
func TestOversizedCheckIsLoggedAndCounted(t *testing.T) {
	cfg := strings.Replace(defaultConfig(t), "  insufficient_balance_status: 402\n", "  insufficient_balance_status: 402\n  max_receive_bytes: 1048576\n", 1)
	path := filepath.Join(t.TempDir(), "quota.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, path)
	under := envoyRequest{path: "/v1/translate", body: strings.Repeat("mot ", 128<<10), headers: map[string]string{"x-user-id": "demo-enterprise"}}
	if resp := s.check(t, under); resp.GetOkResponse() == nil {
		t.Fatalf("a 512 KiB body under the 1 MiB limit: %v, want a decision that allows it", resp.GetDeniedResponse())
	}
	over := envoyRequest{path: "/v1/translate", body: strings.Repeat("mot ", 512<<10), headers: map[string]string{"x-user-id": "demo-enterprise"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.client.Check(ctx, over.checkRequest()); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 2 MiB Check over the 1 MiB limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.stderr.String(), `"msg":"extauthz: a Check was refused before it could be decided","reason":"too_large"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no WARN log line for the oversized Check:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	counted := false
	for _, l := range strings.Split(string(m), "\n") {
		counted = counted || strings.HasPrefix(l, "quota_checks_undecided_total{") && strings.Contains(l, `reason="too_large"`) && strings.HasSuffix(l, "} 1")
	}
	if !counted {
		t.Errorf("no quota_checks_undecided_total{reason=\"too_large\"} 1 in /metrics")
	}
}
