package noop

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quotagate/quotagate/extauthz"
)

// Options are the transport settings of the no-op server: those of
// quotagate's `server` config block, with quotagate's defaults
// (extauthz.TransportOptions), so that the baseline pays for the same
// HTTP/2 settings. The zero value of each field means its default.
type Options struct {
	// MaxConcurrentStreams bounds the streams per connection. Zero means
	// extauthz.DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it. Zero means extauthz.DefaultKeepaliveTime.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for the ping's answer.
	// Zero means extauthz.DefaultKeepaliveTimeout.
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest client ping interval the server
	// tolerates. Zero means extauthz.DefaultKeepaliveMinTime.
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
func NewGRPCServer(opts Options) (*grpc.Server, error) {
	sopts, err := opts.serverOptions()
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(sopts...)
	authv3.RegisterAuthorizationServer(srv, Server{})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv, nil
}

// serverOptions returns the gRPC server options of opts: quotagate's
// transport options, or none when Plain.
func (o Options) serverOptions() ([]grpc.ServerOption, error) {
	if o.Plain {
		return nil, nil
	}
	sopts, err := extauthz.TransportOptions(extauthz.GRPCOptions{
		MaxConcurrentStreams: o.MaxConcurrentStreams,
		KeepaliveTime:        o.KeepaliveTime,
		KeepaliveTimeout:     o.KeepaliveTimeout,
		KeepaliveMinTime:     o.KeepaliveMinTime,
		StreamWorkers:        o.StreamWorkers,
	})
	if err != nil {
		return nil, fmt.Errorf("noop: %w", err)
	}
	return sopts, nil
}
