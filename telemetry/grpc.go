package telemetry

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcCodes is how many gRPC status codes there are (OK to Unauthenticated).
const grpcCodes = int(codes.Unauthenticated) + 1

// grpcLatencyBuckets are the bounds, in seconds, of
// grpc_server_handling_seconds: a Check takes tens of microseconds, and a
// Check past Envoy's timeout (250 ms by default) no longer matters.
var grpcLatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// GRPCMetrics records the gRPC server metrics under the names most
// dashboards know (those of go-grpc-middleware's Prometheus provider):
// grpc_server_started_total, grpc_server_handled_total (by grpc_code) and
// the grpc_server_handling_seconds histogram, each labelled with grpc_type,
// grpc_service and grpc_method. Its interceptors are safe for concurrent
// use; a method's series are resolved once, so that a call allocates
// nothing.
type GRPCMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	methods  sync.Map // full method name + type -> *grpcMethod
}

// grpcMethod holds the resolved series of one method.
type grpcMethod struct {
	labels   [3]string // grpc_type, grpc_service, grpc_method
	started  prometheus.Counter
	handling prometheus.Observer
	mu       sync.Mutex                                    // serializes creating a handled series
	handled  [grpcCodes]atomic.Pointer[prometheus.Counter] // by code, created on first use
	parent   *GRPCMetrics
}

// NewGRPCMetrics registers the gRPC server metrics on the registry of p
// (the one /metrics serves).
func (p *Providers) NewGRPCMetrics() (*GRPCMetrics, error) {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &GRPCMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "RPCs completed on the server, whatever their status code.",
		}, append(labels, "grpc_code")),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_server_handling_seconds", Help: "Time the server took to handle an RPC, in seconds.",
			Buckets: grpcLatencyBuckets,
		}, labels),
	}
	for _, c := range []prometheus.Collector{m.started, m.handled, m.handling} {
		if err := p.registry.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// method returns the series of fullMethod ("/pkg.Service/Method") for the
// RPC type typ ("unary", "server_stream", ...).
func (m *GRPCMetrics) method(fullMethod, typ string) *grpcMethod {
	// The key is fullMethod alone for unary calls, so that the lookup on
	// the hot path builds no string.
	key := fullMethod
	if typ != "unary" {
		key = typ + " " + fullMethod
	}
	if v, ok := m.methods.Load(key); ok {
		return v.(*grpcMethod)
	}
	svc, name := splitMethod(fullMethod)
	gm := &grpcMethod{labels: [3]string{typ, svc, name}, parent: m}
	gm.started = m.started.WithLabelValues(typ, svc, name)
	gm.handling = m.handling.WithLabelValues(typ, svc, name)
	v, _ := m.methods.LoadOrStore(key, gm)
	return v.(*grpcMethod)
}

// done counts a finished call with its status code.
func (gm *grpcMethod) done(start time.Time, err error) {
	c := status.Code(err)
	i := int(c)
	if i < 0 || i >= grpcCodes {
		i = int(codes.Unknown)
	}
	ctr := gm.handled[i].Load()
	if ctr == nil {
		gm.mu.Lock()
		if ctr = gm.handled[i].Load(); ctr == nil {
			n := gm.parent.handled.WithLabelValues(gm.labels[0], gm.labels[1], gm.labels[2], codes.Code(i).String())
			ctr = &n
			gm.handled[i].Store(ctr)
		}
		gm.mu.Unlock()
	}
	(*ctr).Inc()
	gm.handling.Observe(time.Since(start).Seconds())
}

// UnaryInterceptor counts and times unary calls.
func (m *GRPCMetrics) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	gm := m.method(info.FullMethod, "unary")
	gm.started.Inc()
	start := time.Now()
	resp, err := handler(ctx, req)
	gm.done(start, err)
	return resp, err
}

// StreamInterceptor counts and times streaming calls (health Watch,
// reflection), from start to the end of the stream.
func (m *GRPCMetrics) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	typ := "bidi_stream"
	switch {
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	case !info.IsClientStream && info.IsServerStream:
		typ = "server_stream"
	}
	gm := m.method(info.FullMethod, typ)
	gm.started.Inc()
	start := time.Now()
	err := handler(srv, ss)
	gm.done(start, err)
	return err
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
