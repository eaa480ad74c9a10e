package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/telemetry"
)

const benchConfig = `
quota_manager:
  tiers:
    big: {api_calls_per_minute: 1000000000, priority: high}
    tiny: {api_calls_per_minute: 1, priority: low}
  default_tier: big
  users:
    denied-0: {tier: tiny}
    denied-1: {tier: tiny}
identity:
  sources: [header]
  header: {name: x-user-id, trusted: true}
`

// BenchmarkCheckTelemetry measures the CPU cost per Check of the gRPC
// handler with the telemetry hook: metrics only (tracing off) and metrics
// plus tracing at the default sampling exported to a loopback OTLP
// receiver, with 1% and 10% of Checks rejected.
func BenchmarkCheckTelemetry(b *testing.B) {
	for _, every := range []int64{100, 10} {
		for _, tracing := range []bool{false, true} {
			b.Run("rejected=1in"+strconv.FormatInt(every, 10)+"/tracing="+strconv.FormatBool(tracing), func(b *testing.B) {
				benchCheck(b, tracing, every)
			})
		}
	}
}

func benchCheck(b *testing.B, tracing bool, every int64) {
	env := map[string]string{"OTEL_METRICS_EXPORTER": "none"}
	if tracing {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer()
		collectortrace.RegisterTraceServiceServer(srv, &spanSink{})
		go srv.Serve(lis)
		b.Cleanup(srv.Stop)
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://" + lis.Addr().String()
		env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	}
	file, err := config.Parse([]byte(benchConfig))
	if err != nil {
		b.Fatal(err)
	}
	prov, err := telemetry.Setup(context.Background(), telemetry.Options{Getenv: func(k string) string { return env[k] },
		SampleAllowed: telemetry.DefaultSampleAllowed, SampleRejected: telemetry.DefaultSampleRejected})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prov.Shutdown(context.Background()) })
	a, err := assemble(context.Background(), file, assembleOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Providers: prov})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.close)
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			user := "u" + strconv.FormatInt(i%1000, 10)
			if i%every == 0 {
				user = "denied-" + strconv.FormatInt(i%2, 10)
			}
			_, err := a.authz.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/v1/items", Host: "api", Headers: map[string]string{"x-user-id": user},
				}},
			}})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
