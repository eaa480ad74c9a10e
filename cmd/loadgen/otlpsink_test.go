package main

import (
	"context"
	"net"
	"testing"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestOTLPSink exports spans and metrics to the sink over loopback gRPC
// and checks what it counted.
func TestOTLPSink(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var counts sinkCounts
	srv := newOTLPSink(&counts)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })

	ctx := context.Background()
	spans := func(n int) []*tracepb.Span { return make([]*tracepb.Span, n) }
	for _, n := range []int{3, 2} {
		req := &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
			{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans(n - 1)}, {Spans: spans(1)}}},
		}}
		if _, err := collectortrace.NewTraceServiceClient(cc).Export(ctx, req); err != nil {
			t.Fatalf("trace export: %v", err)
		}
	}
	mreq := &collectormetrics.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{
		{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{Name: "a"}, {Name: "b"}}}}},
	}}
	if _, err := collectormetrics.NewMetricsServiceClient(cc).Export(ctx, mreq); err != nil {
		t.Fatalf("metrics export: %v", err)
	}
	if got, want := counts.String(), "5 spans in 2 trace exports, 1 metric exports of 2 data points"; got != want {
		t.Errorf("counts = %q, want %q", got, want)
	}
}
