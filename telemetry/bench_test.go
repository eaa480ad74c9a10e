package telemetry

import (
	"context"
	"io"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// BenchmarkRecord measures the per-Check cost of Record: with tracing off
// (metrics only, no span exporter) and on at the default sampling,
// exporting to a loopback OTLP/gRPC receiver. Both record metrics. The mix
// is 90% allows and 10% rejections, each with a sampled-out Envoy parent
// half of the time.
func BenchmarkRecord(b *testing.B) {
	tests := []struct {
		name    string
		tracing bool
	}{
		{name: "tracing=off", tracing: false},
		{name: "tracing=on", tracing: true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			env := map[string]string{}
			if tt.tracing {
				endpoint, _ := startGRPCReceiver(b)
				env = map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRICS_EXPORTER": "none"}
			}
			p, err := Setup(context.Background(), Options{Getenv: envMap(env), SampleAllowed: DefaultSampleAllowed, SampleRejected: DefaultSampleRejected})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			r, err := NewRecorder(p, RecorderOptions{Logger: NewLogger(io.Discard, nil)})
			if err != nil {
				b.Fatal(err)
			}
			allow := fullDenial()
			allow.Outcome, allow.Reason, allow.Message, allow.HTTPStatus = OutcomeAllow, "ok", "", 200
			deny := fullDenial()
			md := map[string][]string{"traceparent": {"00-" + envoyTraceID + "-" + envoySpanID + "-00"}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					ctx := context.Background()
					if i%2 == 0 {
						ctx = r.Extract(ctx, md, nil)
					}
					d := allow
					if i%10 == 0 {
						d = deny
					}
					r.Record(ctx, time.Now(), d)
				}
			})
		})
	}
}

// BenchmarkExtract joins the trace of a Check whose gRPC metadata carries
// what Envoy's ext_authz client sends (no trace context) and whose checked
// request carries a traceparent: "copy" copies the metadata first
// (metadata.FromIncomingContext, then Extract), "in-place" reads it where
// it is (ExtractIncoming).
func BenchmarkExtract(b *testing.B) {
	r, err := NewRecorder(nil, RecorderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	md := metadata.MD{":authority": {"quotagate"}, "content-type": {"application/grpc"}, "user-agent": {"envoy/1.36"},
		"te": {"trailers"}, "grpc-accept-encoding": {"identity,deflate,gzip"}, "x-envoy-internal": {"true"},
		"x-envoy-expected-rq-timeout-ms": {"200"}, "x-request-id": {"7c2b0f8e-5a59-4f3e-9d36-1a1b2c3d4e5f"}}
	ctx := metadata.NewIncomingContext(context.Background(), md)
	headers := map[string]string{"traceparent": "00-" + envoyTraceID + "-" + envoySpanID + "-00", "x-user-id": "u1"}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, _ := metadata.FromIncomingContext(ctx)
			if !trace.SpanContextFromContext(r.Extract(ctx, m, headers)).IsValid() {
				b.Fatal("no trace")
			}
		}
	})
	b.Run("in-place", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !trace.SpanContextFromContext(r.ExtractIncoming(ctx, headers)).IsValid() {
				b.Fatal("no trace")
			}
		}
	})
}
