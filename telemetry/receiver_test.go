package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// sink keeps what an OTLP receiver was sent. It is safe for concurrent use.
type sink struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	batches []int // spans per trace export, in order
	metrics []*metricspb.Metric
}

func (s *sink) addTraces(req *collectortrace.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans = append(s.spans, ss.GetSpans()...)
			n += len(ss.GetSpans())
		}
	}
	s.batches = append(s.batches, n)
}

// Batches returns how many spans each trace export carried, in order.
func (s *sink) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...)
}

func (s *sink) addMetrics(req *collectormetrics.ExportMetricsServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			s.metrics = append(s.metrics, sm.GetMetrics()...)
		}
	}
}

// Spans returns a copy of the spans received so far.
func (s *sink) Spans() []*tracepb.Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*tracepb.Span(nil), s.spans...)
}

// Metric returns the last received metric called name, or nil.
func (s *sink) Metric(name string) *metricspb.Metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.metrics) - 1; i >= 0; i-- {
		if s.metrics[i].GetName() == name {
			return s.metrics[i]
		}
	}
	return nil
}

type traceService struct {
	collectortrace.UnimplementedTraceServiceServer
	sink *sink
}

func (t traceService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	t.sink.addTraces(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

type metricsService struct {
	collectormetrics.UnimplementedMetricsServiceServer
	sink *sink
}

func (m metricsService) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	m.sink.addMetrics(req)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// startGRPCReceiver starts a real OTLP/gRPC TraceService and MetricsService
// on loopback and returns its endpoint URL and what it receives.
func startGRPCReceiver(t testing.TB) (string, *sink) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &sink{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, traceService{sink: s})
	collectormetrics.RegisterMetricsServiceServer(srv, metricsService{sink: s})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return "http://" + lis.Addr().String(), s
}

// startHTTPReceiver starts a real OTLP/HTTP (protobuf) receiver on loopback
// serving /v1/traces and /v1/metrics, and returns its base URL.
func startHTTPReceiver(t testing.TB) (string, *sink) {
	t.Helper()
	s := &sink{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req collectortrace.ExportTraceServiceRequest
		if !decodeProto(w, r, &req) {
			return
		}
		s.addTraces(&req)
		writeProto(w, &collectortrace.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req collectormetrics.ExportMetricsServiceRequest
		if !decodeProto(w, r, &req) {
			return
		}
		s.addMetrics(&req)
		writeProto(w, &collectormetrics.ExportMetricsServiceResponse{})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, s
}

func decodeProto(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = proto.Unmarshal(body, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

// attrs flattens OTLP attributes to strings for comparison.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = strconv.FormatInt(x.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = strconv.FormatBool(x.BoolValue)
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

// envMap returns a Getenv over m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
