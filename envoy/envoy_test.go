package envoy

import (
	"errors"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// uncommentJWT returns the front proxy with its optional jwt_authn block
// enabled, so that the commented configuration is validated too: between
// the BEGIN and END markers, commented YAML lines are uncommented and
// commented prose is dropped.
func uncommentJWT(t *testing.T, data []byte) []byte {
	t.Helper()
	yamlLine := regexp.MustCompile(`^(\s*)# (\s*(- |"?[@\w]+"?:).*)$`)
	var out []string
	inside, seen := false, false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.Contains(l, "# --- BEGIN jwt_authn"):
			inside, seen = true, true
			continue
		case strings.Contains(l, "# --- END jwt_authn"):
			inside = false
			continue
		case !inside:
			out = append(out, l)
			continue
		}
		if m := yamlLine.FindStringSubmatch(l); m != nil {
			out = append(out, m[1]+m[2])
		}
	}
	if !seen {
		t.Fatalf("front-proxy.yaml lacks the jwt_authn markers")
	}
	return []byte(strings.Join(out, "\n"))
}

func TestExampleBootstrapsValidate(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("want at least the front proxy and the sidecar, found %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(data); err != nil {
				t.Errorf("Validate(%s): %v", f, err)
			}
		})
	}
	t.Run("front-proxy.yaml with jwt_authn enabled", func(t *testing.T) {
		data, err := os.ReadFile("front-proxy.yaml")
		if err != nil {
			t.Fatal(err)
		}
		enabled := uncommentJWT(t, data)
		if !strings.Contains(string(enabled), "\n          - name: envoy.filters.http.jwt_authn") {
			t.Fatalf("uncommenting did not enable jwt_authn:\n%s", enabled)
		}
		if err := Validate(enabled); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
}

func TestValidateRejectsBrokenConfigs(t *testing.T) {
	good, err := os.ReadFile("front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		want           string // in the error
	}{
		{name: "not yaml", old: "static_resources:", new: "static_resources: [", want: "yaml"},
		{name: "unknown top-level field", old: "static_resources:", new: "static_resource:", want: "static_resource"},
		{name: "misspelled ext_authz field inside typed_config", old: "failure_mode_allow: false", new: "failure_mode_alow: false", want: "failure_mode_alow"},
		{name: "empty ext_authz cluster name", old: "envoy_grpc: {cluster_name: quotagate}", new: "envoy_grpc: {cluster_name: \"\"}", want: "ClusterName"},
		{name: "empty stat prefix inside the connection manager", old: "stat_prefix: ingress_http", new: "stat_prefix: \"\"", want: "StatPrefix"},
		{name: "negative connect timeout", old: "connect_timeout: 1s", new: "connect_timeout: -1s", want: "ConnectTimeout"},
		{name: "bad transport API version", old: "transport_api_version: V3", new: "transport_api_version: V9", want: "V9"},
		{name: "zero max_request_bytes", old: "max_request_bytes: 65536", new: "max_request_bytes: 0", want: "MaxRequestBytes"},
		{name: "unregistered extension", old: "envoy.extensions.filters.http.router.v3.Router", new: "envoy.extensions.filters.http.nosuch.v3.Nope", want: "nosuch"},
		{name: "per-route config that neither disables nor sets check settings", old: "                    disabled: true\n", new: "", want: "Override"},
		{name: "cluster without a name", old: "  - name: backend\n", new: "  - name: \"\"\n", want: "Name"},
		{name: "settlement logger without a log name", old: "log_name: quotagate_settlement", new: "log_name: \"\"", want: "LogName"},
		{name: "settlement logger without a cluster", old: "envoy_grpc: {cluster_name: quotagate}\n                # A refund", new: "envoy_grpc: {cluster_name: \"\"}\n                # A refund", want: "ClusterName"},
		{name: "settlement logger with a zero flush interval", old: "buffer_flush_interval: 0.25s", new: "buffer_flush_interval: 0s", want: "BufferFlushInterval"},
		{name: "misspelled settlement logger field", old: "additional_response_headers_to_log:", new: "additional_response_header_to_log:", want: "additional_response_header_to_log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(good), tt.old) {
				t.Fatalf("front-proxy.yaml no longer contains %q", tt.old)
			}
			broken := strings.Replace(string(good), tt.old, tt.new, 1)
			err := Validate([]byte(broken))
			if err == nil {
				t.Fatalf("Validate accepted a broken config (%s)", tt.name)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

// forEachExample runs f, as a subtest, on each shipped bootstrap (the
// *.yaml files here), decoded and validated.
func forEachExample(t *testing.T, f func(t *testing.T, name string, b *bootstrapv3.Bootstrap)) {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example bootstraps: %v", err)
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var b bootstrapv3.Bootstrap
			if err := ValidateMessage(data, &b); err != nil {
				t.Fatal(err)
			}
			f(t, name, &b)
		})
	}
}

// listenerHCMs returns the HttpConnectionManagers of b's listeners, each
// named by its listener, and fails the test if there is none.
func listenerHCMs(t *testing.T, b *bootstrapv3.Bootstrap) map[string]*hcmv3.HttpConnectionManager {
	t.Helper()
	out := map[string]*hcmv3.HttpConnectionManager{}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) == nil {
					out[l.GetName()] = &hcm
				}
			}
		}
	}
	if len(out) == 0 {
		t.Errorf("no HttpConnectionManager")
	}
	return out
}

// TestExampleQuotagateClustersHealthChecked checks that every shipped
// bootstrap health-checks its quotagate cluster over grpc.health.v1, so
// that Envoy stops sending Checks to a draining replica.
func TestExampleQuotagateClustersHealthChecked(t *testing.T) {
	forEachExample(t, func(t *testing.T, _ string, b *bootstrapv3.Bootstrap) {
		found := false
		for _, c := range b.GetStaticResources().GetClusters() {
			if c.GetName() != "quotagate" {
				continue
			}
			found = true
			hc := c.GetHealthChecks()
			if len(hc) == 0 || hc[0].GetGrpcHealthCheck() == nil {
				t.Errorf("cluster quotagate has no gRPC health check")
			}
		}
		if !found {
			t.Errorf("no cluster named quotagate")
		}
	})
}

// TestExampleBootstrapsSettle checks that every shipped bootstrap streams
// its access log to quotagate for settlement, with the decision id and
// the default usage header, and drops a client's own decision id header.
func TestExampleBootstrapsSettle(t *testing.T) {
	forEachExample(t, func(t *testing.T, name string, b *bootstrapv3.Bootstrap) {
		for listener, hcm := range listenerHCMs(t, b) {
			als, stripped := settlementOf(t, hcm)
			checkSettlement(t, name+": listener "+listener, als, "quotagate", []string{DefaultUsageHeader})
			if !stripped {
				t.Errorf("listener %s: a client's own %s reaches the log", listener, DecisionIDHeader)
			}
		}
	})
}
