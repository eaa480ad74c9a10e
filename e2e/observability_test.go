package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

// TestMetricsStandardNames checks that /metrics carries the Go runtime,
// process and gRPC server metrics under their standard names, and that no
// series carries the otel_scope_* labels.
func TestMetricsStandardNames(t *testing.T) {
	s := startServer(t, "")
	for range 3 {
		s.check(t, envoyRequest{method: "GET", path: "/v1/items", headers: map[string]string{"x-user-id": "demo-free"}})
	}
	fams := scrape(t, s.httpAddr)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total",
		"process_resident_memory_bytes", "grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	var checks float64
	for _, m := range fams["grpc_server_handled_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if l["grpc_service"] == "envoy.service.auth.v3.Authorization" && l["grpc_method"] == "Check" && l["grpc_code"] == "OK" && l["grpc_type"] == "unary" {
			checks += m.GetCounter().GetValue()
		}
	}
	if checks < 3 {
		t.Errorf("grpc_server_handled_total{grpc_method=\"Check\",grpc_code=\"OK\"} = %v after 3 Checks", checks)
	}
	if c := histogramCount(fams, "grpc_server_handling_seconds"); c < 3 {
		t.Errorf("grpc_server_handling_seconds count = %d after 3 Checks", c)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetName(), "otel_scope_") {
					t.Fatalf("%s has the label %s=%q: scope labels must be gone", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestOTLPWrongProtocolLogsJSON points the OTLP exporters at a receiver of
// the other protocol, and at the other protocol's well-known port, and
// checks that quotagate says in its JSON log what to set, and that every
// line it writes on stderr is JSON.
func TestOTLPWrongProtocolLogsJSON(t *testing.T) {
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(gs, collectormetrics.UnimplementedMetricsServiceServer{})
	go gs.Serve(grpcLis)
	t.Cleanup(gs.Stop)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK) // an OTLP/HTTP receiver accepts any POST to /v1/metrics
	})}
	go hs.Serve(httpLis)
	t.Cleanup(func() { hs.Close() })

	tests := []struct {
		name string
		env  []string
		// want are fragments of one JSON log line (msg or hint).
		want []string
	}{
		{name: "http/protobuf to a gRPC receiver",
			env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + grpcLis.Addr().String()},
			want: []string{"opentelemetry export failed", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}},
		{name: "grpc to an HTTP receiver",
			env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + httpLis.Addr().String(), "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"},
			want: []string{"opentelemetry export failed", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}},
		{name: "http/protobuf on port 4317",
			env:  []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:4317/v1/metrics"},
			want: []string{"OTLP/gRPC endpoint", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}},
		{name: "grpc on port 4318",
			env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc"},
			want: []string{"OTLP/HTTP endpoint", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_METRIC_EXPORT_INTERVAL=200",
				// The exporter's own timeout bounds its retries; a short one
				// makes the first failure show within a second.
				"OTEL_EXPORTER_OTLP_TIMEOUT=500")
			env = append(env, tt.env...)
			var stdout, stderr logtest.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
			cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			var found string
			for deadline := time.Now().Add(20 * time.Second); found == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				for _, line := range strings.Split(stderr.String(), "\n") {
					if containsAll(line, tt.want) {
						found = line
						break
					}
				}
			}
			cancel()
			cmd.Wait()
			if found == "" {
				t.Fatalf("no log line with %q within 20s; stderr:\n%s", tt.want, stderr.String())
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(found), &rec); err != nil || rec["level"] != "WARN" {
				t.Errorf("the line is not a JSON warning (%v): %s", err, found)
			}
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if line != "" && !json.Valid([]byte(line)) {
					t.Errorf("stderr has a line that is not JSON: %s", line)
				}
			}
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
