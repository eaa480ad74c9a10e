package envoy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
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

// TestGenerateBootstrapAccessLogAndTracer checks that the bootstrap logs
// each request as JSON with quotagate's decision metadata, and traces to
// the configured collector (or not at all with NoCollector).
func TestGenerateBootstrapAccessLogAndTracer(t *testing.T) {
	tests := []struct {
		name      string
		collector string
		wantHost  string
		wantPort  uint32
	}{
		{name: "default collector", wantHost: "127.0.0.1", wantPort: 4317},
		{name: "named collector", collector: "otel-collector.observability:4317", wantHost: "otel-collector.observability", wantPort: 4317},
		{name: "no tracer", collector: NoCollector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Generate(&buf, GenerateOptions{Bootstrap: true, Routes: seedRoutes, Collector: tt.collector, TraceServiceName: "edge"}); err != nil {
				t.Fatal(err)
			}
			var b bootstrapv3.Bootstrap
			if err := ValidateMessage(buf.Bytes(), &b); err != nil {
				t.Fatalf("generated bootstrap: %v\n%s", err, buf.String())
			}
			hcm := hcmOf(&b)
			// The JSON line on stdout, then the settlement logger
			// (TestGenerateSettlement).
			if len(hcm.GetAccessLog()) != 2 {
				t.Fatalf("access logs = %d, want 2", len(hcm.GetAccessLog()))
			}
			var stdout streamv3.StdoutAccessLog
			if err := hcm.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(&stdout); err != nil {
				t.Fatal(err)
			}
			fields := stdout.GetLogFormat().GetJsonFormat().GetFields()
			for _, k := range []string{"quota_decision_id", "quota_tier", "quota_reason", "quota_action", "trace_id", "response_code"} {
				if fields[k].GetStringValue() != AccessLogFields[k] || fields[k] == nil {
					t.Errorf("access log field %s = %v, want %q", k, fields[k], AccessLogFields[k])
				}
			}
			if got := fields["quota_decision_id"].GetStringValue(); got != "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%" {
				t.Errorf("quota_decision_id = %q", got)
			}
			var coll *clusterv3.Cluster
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == CollectorCluster {
					coll = c
				}
			}
			if tt.collector == NoCollector {
				if hcm.GetTracing() != nil || coll != nil {
					t.Errorf("tracer or collector cluster present with NoCollector")
				}
				return
			}
			var otel tracev3.OpenTelemetryConfig
			if err := hcm.GetTracing().GetProvider().GetTypedConfig().UnmarshalTo(&otel); err != nil {
				t.Fatalf("tracer: %v", err)
			}
			if otel.GetGrpcService().GetEnvoyGrpc().GetClusterName() != CollectorCluster || otel.GetServiceName() != "edge" {
				t.Errorf("tracer = %v, want OTLP/gRPC to %s as service edge", &otel, CollectorCluster)
			}
			sa := coll.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != tt.wantHost || sa.GetPortValue() != tt.wantPort {
				t.Errorf("collector cluster = %s:%d, want %s:%d", sa.GetAddress(), sa.GetPortValue(), tt.wantHost, tt.wantPort)
			}
			if coll.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
				t.Errorf("collector cluster does not speak HTTP/2 (OTLP/gRPC needs it)")
			}
		})
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
		{name: "collector without port", opts: GenerateOptions{Collector: "otel-collector"}, want: `collector: want host:port of an OTLP/gRPC collector (e.g. otel-collector:4317) or "none", got "otel-collector"`},
		{name: "collector port out of range", opts: GenerateOptions{Collector: "c:0"}, want: `collector: want host:port`},
		{name: "usage header with a space", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: []string{"x usage"}}}, want: `usage headers[0]: want an HTTP header name`},
		{name: "usage header twice", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: []string{"x-usage-tokens", "X-Usage-Tokens"}}}, want: `usage headers[1]: "X-Usage-Tokens" is listed twice`},
		{name: "decision id as usage header", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: []string{"X-Quota-Decision-Id"}}}, want: "usage headers[0]: X-Quota-Decision-Id is quotagate's own request header"},
		{name: "none with another usage header", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: []string{"x-usage-tokens", "none"}}}, want: `usage headers[1]: "none" means no usage header`},
		{name: "pseudo-header as usage header", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: []string{":status"}}}, want: `usage headers[0]: want an HTTP header name`},
		{name: "too many usage headers", opts: GenerateOptions{Settlement: Settlement{UsageHeaders: strings.Split("a b c d e f g h i j k l m n o p q", " ")}}, want: "usage headers: at most 16, got 17"},
		{name: "settlement address without port", opts: GenerateOptions{Settlement: Settlement{Address: "quotagate"}}, want: `settlement address: want host:port`},
		{name: "negative flush interval", opts: GenerateOptions{Settlement: Settlement{FlushInterval: -time.Second}}, want: "settlement flush interval: must be between 1ms and 1m, got -1s"},
		{name: "flush interval too long", opts: GenerateOptions{Settlement: Settlement{FlushInterval: time.Hour}}, want: "settlement flush interval: must be between 1ms and 1m, got 1h0m0s"},
		{name: "cluster named like the settlement cluster", opts: GenerateOptions{Cluster: SettlementCluster, Settlement: Settlement{Address: "q:9192"}}, want: `cluster names: "quotagate_settlement"`},
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
