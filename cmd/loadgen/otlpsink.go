package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// sinkCounts is what an OTLP sink has received.
type sinkCounts struct {
	traceExports, spans       atomic.Int64
	metricExports, dataPoints atomic.Int64
}

// String reports the counts on one line.
func (c *sinkCounts) String() string {
	return fmt.Sprintf("%d spans in %d trace exports, %d metric exports of %d data points",
		c.spans.Load(), c.traceExports.Load(), c.metricExports.Load(), c.dataPoints.Load())
}

// traceSink accepts OTLP trace exports, counts their spans and drops them.
type traceSink struct {
	collectortrace.UnimplementedTraceServiceServer
	counts *sinkCounts
}

func (s traceSink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.counts.traceExports.Add(1)
	s.counts.spans.Add(n)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// metricSink accepts OTLP metric exports, counts them and drops them.
type metricSink struct {
	collectormetrics.UnimplementedMetricsServiceServer
	counts *sinkCounts
}

func (s metricSink) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	var n int64
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			n += int64(len(sm.GetMetrics()))
		}
	}
	s.counts.metricExports.Add(1)
	s.counts.dataPoints.Add(n)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// newOTLPSink returns a gRPC server with the OTLP trace and metrics
// services registered, both accepting and discarding what they receive.
func newOTLPSink(counts *sinkCounts) *grpc.Server {
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, traceSink{counts: counts})
	collectormetrics.RegisterMetricsServiceServer(srv, metricSink{counts: counts})
	return srv
}

// runOTLPSink implements "loadgen otlp-sink": it serves OTLP/gRPC on
// --addr until ctx is done, then prints what it received.
func runOTLPSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen otlp-sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	addr := fs.String("addr", "127.0.0.1:4317", "loopback `host:port` to serve OTLP/gRPC on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("loadgen: otlp-sink: unexpected argument %q; see --help", fs.Arg(0))
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("loadgen: otlp-sink: %w; pick a free port with --addr", err)
	}
	var counts sinkCounts
	srv := newOTLPSink(&counts)
	fmt.Fprintf(stdout, "otlp-sink: listening on %s\n", lis.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		srv.Stop()
		<-served
	case err = <-served:
	}
	fmt.Fprintf(stdout, "otlp-sink: received %s\n", &counts)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("loadgen: otlp-sink: %w", err)
	}
	return nil
}
