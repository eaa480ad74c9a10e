package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExporterTargetWarning(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		// want is a fragment of the warning; empty means no warning.
		want string
	}{
		{name: "http on 4318", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "grpc on 4317", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{name: "http on a custom port", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com"}},
		{name: "default protocol on 4317",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
			want: "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or point the endpoint at the collector's OTLP/HTTP port (4318 by default)"},
		{name: "explicit http/protobuf on 4317 through the signal variable",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			want: "set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
		{name: "grpc on 4318",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or point the endpoint at the collector's OTLP/gRPC port (4317 by default)"},
		{name: "grpc with an OTLP/HTTP path",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9000/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, err := signalTarget(func(k string) string { return tt.env[k] }, "TRACES")
			if err != nil {
				t.Fatal(err)
			}
			got := exporterTarget("TRACES", target).Warning
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("warning = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestSetupListsExporters(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "none"}
	p, err := Setup(context.Background(), Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	got := p.Exporters()
	if len(got) != 1 || got[0].Signal != "traces" || got[0].Endpoint != "http://127.0.0.1:4318/v1/traces" || got[0].Protocol != "http/protobuf" || got[0].Warning != "" {
		t.Errorf("Exporters() = %+v, want the traces exporter alone", got)
	}
}

func TestErrorHandler(t *testing.T) {
	targets := []ExporterTarget{{Signal: "metrics", Endpoint: "http://c:9000/v1/metrics", Protocol: protoHTTP}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	p := &Providers{targets: targets}
	h := p.ErrorHandler(NewLogger(&buf, slog.LevelInfo), 10*time.Second, func() time.Time { return now })
	mismatch := errors.New(`failed to upload metrics: Post "http://c:9000/v1/metrics": net/http: HTTP/1.x transport connection broken: malformed HTTP response "\x00\x00"`)
	h.Handle(mismatch)
	for range 5 { // a dead collector fails every interval: these are suppressed
		now = now.Add(time.Second)
		h.Handle(mismatch)
	}
	now = now.Add(10 * time.Second)
	h.Handle(errors.New("traces export: context deadline exceeded"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2 (rate-limited):\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if hint, _ := first["hint"].(string); !strings.Contains(hint, "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc") || first["level"] != "WARN" {
		t.Errorf("first line = %v, want a warning whose hint says to set OTEL_EXPORTER_OTLP_PROTOCOL=grpc", first)
	}
	if second["suppressed"] != float64(5) || second["hint"] != nil {
		t.Errorf("second line = %v, want suppressed=5 and no hint (a timeout is not a protocol mismatch)", second)
	}
}

func TestGRPCMetrics(t *testing.T) {
	p, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	m, err := p.NewGRPCMetrics()
	if err != nil {
		t.Fatal(err)
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	fail := func(context.Context, any) (any, error) { return nil, status.Error(codes.ResourceExhausted, "busy") }
	ctx := context.Background()
	for range 3 {
		m.UnaryInterceptor(ctx, nil, info, ok)
	}
	m.UnaryInterceptor(ctx, nil, info, fail)
	// AllocsPerRun calls the function 101 times (one warm-up).
	if allocs := testing.AllocsPerRun(100, func() { m.UnaryInterceptor(ctx, nil, info, ok) }); allocs != 0 {
		t.Errorf("a Check through the interceptor allocates %v times, want 0", allocs)
	}
	sinfo := &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}
	m.StreamInterceptor(nil, nil, sinfo, func(any, grpc.ServerStream) error { return status.Error(codes.Canceled, "gone") })

	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="envoy.service.auth.v3.Authorization",grpc_type="unary"} 104`,
		`grpc_server_handled_total{grpc_code="ResourceExhausted",grpc_method="Check",grpc_service="envoy.service.auth.v3.Authorization",grpc_type="unary"} 1`,
		`grpc_server_started_total{grpc_method="Check",grpc_service="envoy.service.auth.v3.Authorization",grpc_type="unary"} 105`,
		`grpc_server_handling_seconds_count{grpc_method="Check",grpc_service="envoy.service.auth.v3.Authorization",grpc_type="unary"} 105`,
		`grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="grpc.health.v1.Health",grpc_type="server_stream"} 1`,
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), "otel_scope_") {
		t.Errorf("/metrics has otel_scope_ labels")
	}
}

// BenchmarkGRPCMetricsInterceptor measures what the gRPC server metrics
// add to each Check: the method lookup, two counters and a histogram.
func BenchmarkGRPCMetricsInterceptor(b *testing.B) {
	p, err := Setup(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	m, err := p.NewGRPCMetrics()
	if err != nil {
		b.Fatal(err)
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			m.UnaryInterceptor(ctx, nil, info, ok)
		}
	})
}

// FuzzExporterTarget feeds hostile OTEL_* values to the endpoint and
// protocol reading and to the startup warning: nothing panics, a warning
// always names the other protocol as the value to set, and the error hint
// never invents a target.
func FuzzExporterTarget(f *testing.F) {
	f.Add("http://c:4317", "", "")
	f.Add("http://c:4318", "grpc", "")
	f.Add("https://c:4317/v1/traces", "http/protobuf", "http/protobuf")
	f.Add("c:4317", "grpc", "")
	f.Add("http://[::1]:4318/v1/metrics/", "", "grpc")
	f.Add("http://%zz", "", "")
	f.Fuzz(func(t *testing.T, endpoint, proto, signalProto string) {
		env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": proto, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": signalProto}
		target, err := signalTarget(func(k string) string { return env[k] }, "METRICS")
		if err != nil {
			return
		}
		et := exporterTarget("METRICS", target)
		if et.Warning != "" {
			other := protoGRPC
			if et.Protocol == protoGRPC {
				other = protoHTTP
			}
			if !strings.Contains(et.Warning, "="+other+",") {
				t.Fatalf("warning %q for protocol %s does not say to set %s", et.Warning, et.Protocol, other)
			}
		}
		hint := protocolHint("malformed HTTP response "+endpoint, []ExporterTarget{et})
		if hint == "" || !strings.Contains(hint, et.Endpoint) {
			t.Fatalf("hint %q does not name the endpoint %q", hint, et.Endpoint)
		}
		if protocolHint("context deadline exceeded", []ExporterTarget{et}) != "" {
			t.Fatalf("a timeout got a protocol hint")
		}
	})
}

// TestTraceExportBatches: a trace export carries at most 64 spans by
// default, so that converting a batch is a short stretch of CPU, and
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE sets another bound. No span is lost
// either way.
func TestTraceExportBatches(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      string // OTEL_BSP_MAX_EXPORT_BATCH_SIZE
		maxBatch int
	}{
		{name: "default", maxBatch: defaultExportBatchSpans},
		{name: "set", env: "100", maxBatch: 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			endpoint, s := startGRPCReceiver(t)
			p, err := Setup(context.Background(), Options{
				Getenv: envMap(map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT":    endpoint,
					"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
					"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": tt.env,
				}),
				SampleAllowed: 1, SampleRejected: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			const spans = 300
			tracer := p.TracerProvider.Tracer("test")
			for range spans {
				_, sp := tracer.Start(context.Background(), "check")
				sp.End()
			}
			flush(t, p)
			batches := s.Batches()
			total, largest := 0, 0
			for _, n := range batches {
				total += n
				largest = max(largest, n)
			}
			if total != spans {
				t.Fatalf("the receiver got %d spans in %v, want %d", total, batches, spans)
			}
			if largest > tt.maxBatch {
				t.Errorf("an export carried %d spans (%v), want at most %d", largest, batches, tt.maxBatch)
			}
			if len(batches) < (spans+tt.maxBatch-1)/tt.maxBatch {
				t.Errorf("%d exports (%v) cannot each hold at most %d spans", len(batches), batches, tt.maxBatch)
			}
		})
	}
}
