package envoy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

var seedRoutes = []Route{
	{Prefix: "/v1/translate", Method: "POST", Action: "translate"},
	{Action: "summarize"},
	{Prefix: "/v1/reports/nightly", Action: "summarize", Workflow: "nightly-report"},
}

// validateSnippets checks every part of Generate's snippet output with
// Envoy's rules and returns the decoded routes.
func validateSnippets(t *testing.T, out []byte) []*routev3.Route {
	t.Helper()
	var top map[string]json.RawMessage
	if err := yaml.UnmarshalStrict(out, &top); err != nil {
		t.Fatalf("output is not the snippet YAML (http_connection_manager, http_filters, clusters, routes): %v\n%s", err, out)
	}
	checkPathSettings(t, "the http_connection_manager snippet", decodeHCM(t, top["http_connection_manager"]))
	delete(top, "http_connection_manager")
	s := map[string][]json.RawMessage{}
	for k, raw := range top {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatalf("snippet %s is not a list: %v", k, err)
		}
		s[k] = list
	}
	kinds := map[string]func() proto.Message{
		"http_filters": func() proto.Message { return &hcmv3.HttpFilter{} },
		"clusters":     func() proto.Message { return &clusterv3.Cluster{} },
		"routes":       func() proto.Message { return &routev3.Route{} },
	}
	var routes []*routev3.Route
	for key, mk := range kinds {
		if len(s[key]) == 0 {
			t.Errorf("output has no %s", key)
		}
		for i, raw := range s[key] {
			m := mk()
			if err := ValidateMessage(raw, m); err != nil {
				t.Errorf("%s[%d]: %v", key, i, err)
			}
			if r, ok := m.(*routev3.Route); ok {
				routes = append(routes, r)
			}
		}
	}
	return routes
}

// contextExtensions returns each route's prefix (or path) and its ext_authz
// per-route setting, as "disabled" or "action=...,workflow=...".
func contextExtensions(t *testing.T, routes []*routev3.Route) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range routes {
		key := r.GetMatch().GetPrefix() + r.GetMatch().GetPath()
		a := r.GetTypedPerFilterConfig()[ExtAuthzFilterName]
		if a == nil {
			out[key] = ""
			continue
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := a.UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		if per.GetDisabled() {
			out[key] = "disabled"
			continue
		}
		ext := per.GetCheckSettings().GetContextExtensions()
		out[key] = "action=" + ext["action"] + ",workflow=" + ext["workflow"]
	}
	return out
}

func TestGenerateSnippets(t *testing.T) {
	tests := []struct {
		name string
		opts GenerateOptions
		want map[string]string // route -> per-route setting
		in   []string          // substrings of the output
	}{
		{
			name: "defaults",
			want: map[string]string{"/healthz": "disabled", "/": ""},
			in:   []string{"cluster_name: quotagate", "timeout: 0.250s", "max_request_bytes: 65536", "allow_partial_message: true", "include_peer_certificate: true", "transport_api_version: V3", "fail closed"},
		},
		{
			name: "seed actions and a workflow",
			opts: GenerateOptions{Address: "quotagate.default.svc", Port: 9000, Timeout: 100 * time.Millisecond, Routes: seedRoutes, HealthPath: "/livez", FailureModeAllow: true},
			want: map[string]string{
				"/livez": "disabled", "/v1/translate": "action=translate,workflow=", "/summarize": "action=summarize,workflow=",
				"/v1/reports/nightly": "action=summarize,workflow=nightly-report", "/": "",
			},
			in: []string{"type: STRICT_DNS", "port_value: 9000", "timeout: 0.100s", "failure_mode_allow: true", "exact: POST"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Generate(&buf, tt.opts); err != nil {
				t.Fatal(err)
			}
			routes := validateSnippets(t, buf.Bytes())
			got := contextExtensions(t, routes)
			if len(got) != len(tt.want) {
				t.Errorf("routes = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("route %s: %q, want %q", k, got[k], v)
				}
			}
			for _, s := range tt.in {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, buf.String())
				}
			}
			if last := routes[len(routes)-1].GetMatch().GetPrefix(); last != "/" {
				t.Errorf("last route is %q, want the catch-all /", last)
			}
		})
	}
}

func TestGenerateBootstrapValidates(t *testing.T) {
	var buf bytes.Buffer
	if err := Generate(&buf, GenerateOptions{Bootstrap: true, Routes: seedRoutes, ListenPort: 8081, UpstreamAddress: "app", UpstreamPort: 3000}); err != nil {
		t.Fatal(err)
	}
	if err := Validate(buf.Bytes()); err != nil {
		t.Fatalf("generated bootstrap: %v\n%s", err, buf.String())
	}
	for _, s := range []string{"port_value: 8081", "port_value: 3000", "action: translate", "workflow: nightly-report"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("bootstrap lacks %q", s)
		}
	}
}

func TestGenerateOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts GenerateOptions
		want string
	}{
		{name: "port out of range", opts: GenerateOptions{Port: 70000}, want: "port: must be a port between 1 and 65535, got 70000"},
		{name: "negative timeout", opts: GenerateOptions{Timeout: -time.Second}, want: "timeout: must be positive"},
		{name: "relative prefix", opts: GenerateOptions{Routes: []Route{{Prefix: "v1", Action: "x"}}}, want: `routes[0].prefix: must start with /, got "v1"`},
		{name: "empty route", opts: GenerateOptions{Routes: []Route{{}}}, want: "routes[0]: needs a prefix, an action or a workflow"},
		{name: "relative health path", opts: GenerateOptions{HealthPath: "healthz"}, want: "health path: must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Generate(&buf, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "envoy: ") {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes on error", buf.Len())
			}
		})
	}
}
