package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/quotagate/quotagate/envoy"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// fakeRoutes stands in for the loader main builds from config.File.
func fakeRoutes(path string) (envoyInputs, error) {
	if path == "missing.yaml" {
		return envoyInputs{}, errors.New("config: open missing.yaml: no such file or directory")
	}
	return envoyInputs{Routes: []envoy.Route{
		{Prefix: "/v1/translate", Method: "POST", Action: "translate"},
		{Action: "summarize"},
		{Workflow: "nightly-report"},
	}}, nil
}

// validSnippets fails the test unless out is the snippet YAML with every
// part valid for Envoy.
func validSnippets(t *testing.T, out []byte) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := yaml.UnmarshalStrict(out, &top); err != nil {
		t.Fatalf("not snippet YAML: %v\n%s", err, out)
	}
	// The HttpConnectionManager settings are a mapping; the rest are lists.
	var hcm hcmv3.HttpConnectionManager
	if err := protojson.Unmarshal(top["http_connection_manager"], &hcm); err != nil || !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		t.Errorf("http_connection_manager settings %s (%v): want normalize_path and merge_slashes", top["http_connection_manager"], err)
	}
	delete(top, "http_connection_manager")
	s := map[string][]json.RawMessage{}
	for k, raw := range top {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatalf("%s is not a list: %v", k, err)
		}
		s[k] = list
	}
	mk := map[string]func() proto.Message{
		"http_filters": func() proto.Message { return &hcmv3.HttpFilter{} },
		"clusters":     func() proto.Message { return &clusterv3.Cluster{} },
		"routes":       func() proto.Message { return &routev3.Route{} },
	}
	for key, f := range mk {
		if len(s[key]) == 0 {
			t.Errorf("no %s in output", key)
		}
		for i, raw := range s[key] {
			if err := envoy.ValidateMessage(raw, f()); err != nil {
				t.Errorf("%s[%d]: %v", key, i, err)
			}
		}
	}
}

func TestRunEnvoyConfig(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		loader    func(string) (envoyInputs, error)
		wantErr   string
		wantCode  int // exit code for errors; 0 = not an exitError
		check     func(t *testing.T, out []byte)
		wantInOut []string
		notInOut  []string
	}{
		{name: "snippets from the config's routes", args: []string{"--config", "quota.yaml", "--address", "quotagate.prod:9000"}, loader: fakeRoutes,
			check: validSnippets, wantInOut: []string{"action: translate", "action: summarize", "workflow: nightly-report", "address: quotagate.prod", "port_value: 9000", "exact: POST"}},
		{name: "complete bootstrap", args: []string{"--bootstrap", "--listen-port", "8081", "--upstream-address", "app:3000", "--timeout", "100ms"}, loader: fakeRoutes,
			check: func(t *testing.T, out []byte) {
				if err := envoy.Validate(out); err != nil {
					t.Errorf("bootstrap: %v", err)
				}
			}, wantInOut: []string{"port_value: 8081", "address: app", "timeout: 0.100s"}},
		{name: "no loader", args: nil, check: validSnippets,
			wantInOut: []string{"name: envoy.access_loggers.http_grpc", "- x-quota-decision-id", "- x-usage-tokens", "buffer_flush_interval: 0.250s", "remove: x-quota-decision-id"}},
		{name: "usage headers and flush interval", args: []string{"--usage-header", "X-Usage-Tokens-Out", "--usage-header", "x-words-out", "--settlement-flush-interval", "100ms"},
			check: validSnippets, wantInOut: []string{"- x-usage-tokens-out\n", "- x-words-out\n", "buffer_flush_interval: 0.100s"}, notInOut: []string{"- x-usage-tokens\n"}},
		{name: "settlement on its own listener", args: []string{"--bootstrap", "--settlement-address", "quotagate-als:9192"},
			check: func(t *testing.T, out []byte) {
				if err := envoy.Validate(out); err != nil {
					t.Errorf("bootstrap: %v", err)
				}
			}, wantInOut: []string{"cluster_name: quotagate_settlement", "address: quotagate-als", "port_value: 9192"}},
		{name: "no settlement", args: []string{"--no-settlement"}, check: validSnippets,
			notInOut: []string{"http_grpc", "x-usage-tokens", "early_header_mutation"}},
		{name: "bad usage header", args: []string{"--usage-header", "x usage"}, wantErr: `usage headers[0]: want an HTTP header name`, wantCode: 2},
		{name: "help", args: []string{"--help"}, wantInOut: []string{"Usage: quotagate envoy-config", "--address host:port", "--bootstrap"}},
		{name: "loader error names the file", args: []string{"--config", "missing.yaml"}, loader: fakeRoutes, wantErr: "envoy-config: config: open missing.yaml"},
		{name: "bad address", args: []string{"--address", "quotagate"}, wantErr: `--address "quotagate"`, wantCode: 2},
		{name: "bad port", args: []string{"--address", "q:99999"}, wantErr: "port must be a number between 1 and 65535", wantCode: 2},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined: -nope", wantCode: 2},
		{name: "positional argument", args: []string{"quota.yaml"}, wantErr: "unexpected argument \"quota.yaml\"", wantCode: 2},
		{name: "bad health path", args: []string{"--health-path", "healthz"}, wantErr: "health path: must start with /", wantCode: 2},
		{name: "config without a loader", args: []string{"--config", "q.yaml"}, wantErr: "no route loader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runEnvoyConfig(context.Background(), tt.args, &stdout, &stderr, tt.loader)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				code := 0
				var ee exitError
				if errors.As(err, &ee) {
					code = ee.code
				}
				if code != tt.wantCode {
					t.Errorf("exit code = %d, want %d", code, tt.wantCode)
				}
				if stdout.Len() != 0 {
					t.Errorf("printed %d bytes on error", stdout.Len())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, stdout.Bytes())
			}
			for _, s := range tt.wantInOut {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.notInOut {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("output has %q:\n%s", s, stdout.String())
				}
			}
		})
	}
}

// TestEnvoyConfigFromQuotaConfigs runs the command with main's route loader
// (routes.go) on the embedded default configuration and on a file, and
// validates the bootstrap it prints.
func TestEnvoyConfigFromQuotaConfigs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quota.yaml")
	err := os.WriteFile(path, []byte(`
quota_manager:
  tiers:
    freemium: {api_calls_per_hour: 10, priority: low}
  actions:
    translate: {tokens_per_1000_units: 5, unit: words, settle: {usage_header: X-Words-Out}}
    summarize: {tokens_per_1000_units: 2, unit: words, settle: {usage_header: x-llm-tokens}}
    classify: {tokens_per_call: 1, settle: off}
  workflows:
    nightly-report: {priority: critical}
routes:
  - {path_prefix: /v1/translate, method: POST, action: translate}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
		// lacks are strings the output must not hold.
		lacks []string
	}{
		{name: "embedded default", args: []string{"--bootstrap"}, want: []string{"action: translate", "- x-usage-tokens"}},
		{name: "file", args: []string{"--bootstrap", "--config", path},
			want: []string{"prefix: /v1/translate", "exact: POST", "prefix: /summarize", "action: summarize", "workflow: nightly-report",
				// The settle rules' usage headers are logged, lower-cased, instead of the default.
				"- x-llm-tokens", "- x-words-out"},
			lacks: []string{"x-usage-tokens"}},
		{name: "the flag wins over the settle rules", args: []string{"--bootstrap", "--config", path, "--usage-header", "x-billed"},
			want: []string{"- x-billed"}, lacks: []string{"x-words-out", "x-llm-tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runEnvoyConfig(context.Background(), tt.args, &out, io.Discard, envoyRoutes(func(string) string { return "" })); err != nil {
				t.Fatal(err)
			}
			if err := envoy.Validate(out.Bytes()); err != nil {
				t.Errorf("bootstrap: %v", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q", s)
				}
			}
			for _, s := range tt.lacks {
				if strings.Contains(out.String(), s) {
					t.Errorf("output holds %q", s)
				}
			}
		})
	}
}
