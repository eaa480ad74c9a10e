package noop

import (
	"context"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Options are the transport settings of the no-op server. They default to
// the values of quotagate's `server` config block, so that the baseline
// pays for the same HTTP/2 settings. The zero value of each field means its
// default.
type Options struct {
	// MaxConcurrentStreams bounds the streams per connection. Zero means 1024.
	MaxConcurrentStreams uint32
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it. Zero means 30s.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for the ping's answer.
	// Zero means 10s.
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest client ping interval the server
	// tolerates. Zero means 5s.
	KeepaliveMinTime time.Duration
	// StreamWorkers is the number of long-lived goroutines that run Checks,
	// as in quotagate's server (extauthz.GRPCOptions.StreamWorkers), so the
	// two are compared with the same gRPC machinery. Zero means 64 per
	// GOMAXPROCS; negative means a goroutine per stream.
	StreamWorkers int
	// Plain ignores every other field and serves with grpc-go's default
	// options (no stream workers, default HTTP/2 and keepalive settings):
	// the bare gRPC server a user compares quotagate against (issue 17).
	Plain bool
}

func (o Options) withDefaults() Options {
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 1024
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = 30 * time.Second
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = 10 * time.Second
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = 5 * time.Second
	}
	if o.StreamWorkers == 0 {
		o.StreamWorkers = 64 * runtime.GOMAXPROCS(0)
	}
	return o
}

// Server answers every Check with OK. It is safe for concurrent use; the
// zero value is ready.
type Server struct {
	authv3.UnimplementedAuthorizationServer
}

// Check returns an OK CheckResponse with an empty OkHttpResponse. It
// allocates a fresh response, as a real server must.
func (Server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{
			OkResponse: &authv3.OkHttpResponse{},
		},
	}, nil
}

// NewGRPCServer returns a gRPC server with the Authorization service and
// grpc.health.v1 (SERVING) registered. The caller serves and stops it.
func NewGRPCServer(opts Options) *grpc.Server {
	srv := grpc.NewServer(opts.serverOptions()...)
	authv3.RegisterAuthorizationServer(srv, Server{})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// serverOptions returns the gRPC server options of opts: none when Plain.
func (o Options) serverOptions() []grpc.ServerOption {
	if o.Plain {
		return nil
	}
	o = o.withDefaults()
	var sopts []grpc.ServerOption
	if o.StreamWorkers > 0 {
		sopts = append(sopts, grpc.NumStreamWorkers(uint32(o.StreamWorkers)))
	}
	return append(sopts,
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    o.KeepaliveTime,
			Timeout: o.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             o.KeepaliveMinTime,
			PermitWithoutStream: true,
		}))
}
