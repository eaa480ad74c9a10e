package extauthz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPHandler(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{StripHeaders: []string{"x-tier"}})
	srv := httptest.NewServer(s.HTTPHandler())
	defer srv.Close()

	tests := []struct {
		name        string
		method, url string
		headers     map[string]string
		body        string
		wantStatus  int
		wantHeaders map[string]string
		wantError   string
	}{
		{
			name: "forward auth, action from the auth URL", method: "GET", url: "/?action=translate",
			headers: map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v1/translate", "X-Forwarded-Host": "api.example.com",
				"X-User-Id": "sam", "X-Tier": "enterprise"},
			body:       strings.Repeat("word ", 3000),
			wantStatus: 200,
			wantHeaders: map[string]string{HeaderCost: "15", HeaderTier: "standard", HeaderBalance: "985",
				"X-Envoy-Auth-Headers-To-Remove": "x-tier", HeaderRateLimitPolicy: `"hour";q=100;w=3600`},
		},
		{
			name: "nginx auth_request with X-Original-URI and no body", method: "GET", url: "/",
			headers:     map[string]string{"X-Original-URI": "/v1/things", "X-User-Id": "sam"},
			wantStatus:  200,
			wantHeaders: map[string]string{HeaderTier: "standard"},
		},
		{
			name: "envoy http_service: original method, path and body", method: "POST", url: "/v1/summarize",
			headers:     map[string]string{"X-User-Id": "sam"},
			body:        strings.Repeat("word ", 3000),
			wantStatus:  200,
			wantHeaders: map[string]string{HeaderTier: "standard"},
		},
		{
			name: "client query on the original URI does not choose the action", method: "GET", url: "/",
			headers:    map[string]string{"X-Forwarded-Uri": "/v1/things?action=summarize", "X-User-Id": "fred"},
			wantStatus: 200,
		},
		{
			name: "no identity", method: "GET", url: "/",
			headers:    map[string]string{"X-Forwarded-Uri": "/v1/translate"},
			wantStatus: 401, wantError: CodeUnauthenticated,
			wantHeaders: map[string]string{"Content-Type": "application/json"},
		},
		{
			name: "feature not in plan", method: "GET", url: "/?action=summarize",
			headers:    map[string]string{"X-Forwarded-Uri": "/v1/summarize", "X-User-Id": "fred"},
			wantStatus: 403, wantError: CodeFeatureNotInPlan,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			for k, v := range tt.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if resp.Header.Get(HeaderDecisionID) == "" {
				t.Error("no decision id header")
			}
			if tt.wantError != "" {
				var b map[string]any
				if err := json.Unmarshal(body, &b); err != nil || b["error"] != tt.wantError || b["decision_id"] != resp.Header.Get(HeaderDecisionID) {
					t.Errorf("body %s, want error %s", body, tt.wantError)
				}
			}
		})
	}
}

// TestHTTPMatchesGRPC shows that both adapters give the same denial: the
// same status, headers and body, from the same Decide.
func TestHTTPMatchesGRPC(t *testing.T) {
	c := &clock{now: t0}
	s := newTestServer(t, c, Policy{})
	srv := httptest.NewServer(s.HTTPHandler())
	defer srv.Close()
	in := Input{Headers: map[string]string{"x-user-id": "fred"}, ContentLength: -1}
	for range 10 {
		s.Decide(t.Context(), in)
	}
	grpcResp, err := s.Check(t.Context(), envoyCheck("", map[string]string{"x-user-id": "fred"}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("X-Forwarded-Uri", "/v1/things")
	req.Header.Set("X-User-Id", "fred")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	httpBody, _ := io.ReadAll(resp.Body)

	denied := grpcResp.GetDeniedResponse()
	if int(denied.GetStatus().GetCode()) != resp.StatusCode || resp.StatusCode != 429 {
		t.Fatalf("gRPC status %d, HTTP status %d", denied.GetStatus().GetCode(), resp.StatusCode)
	}
	for _, h := range denied.GetHeaders() {
		k := h.GetHeader().GetKey()
		if k == HeaderDecisionID {
			continue
		}
		if got := resp.Header.Get(k); got != h.GetHeader().GetValue() {
			t.Errorf("header %s: gRPC %q, HTTP %q", k, h.GetHeader().GetValue(), got)
		}
	}
	id := resp.Header.Get(HeaderDecisionID)
	grpcID := headerValue(denied.GetHeaders(), HeaderDecisionID)
	if strings.ReplaceAll(denied.GetBody(), grpcID, id) != string(httpBody) {
		t.Errorf("bodies differ:\ngRPC %s\nHTTP %s", denied.GetBody(), httpBody)
	}
}
