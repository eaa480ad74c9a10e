package extauthz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// GRPCOptions configures the gRPC server that carries the Authorization
// service. The zero value of each field means its documented default.
type GRPCOptions struct {
	// CertFile and KeyFile enable TLS; both or neither must be set.
	CertFile, KeyFile string
	// ClientCAFile, with TLS, requires clients (Envoy) to present a
	// certificate signed by one of its CAs (mTLS).
	ClientCAFile string
	// MaxConcurrentStreams bounds streams per connection. Zero means
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// KeepaliveTime is the idle time after which the server pings a client,
	// and KeepaliveTimeout how long it waits for the answer. Zero means
	// DefaultKeepaliveTime and DefaultKeepaliveTimeout.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest ping interval a client may use
	// before the server closes the connection. Zero means
	// DefaultKeepaliveMinTime.
	KeepaliveMinTime time.Duration
	// Reflection registers the gRPC reflection service (for grpcurl).
	Reflection bool
	// StreamWorkers is the number of long-lived goroutines that run Checks.
	// A Check's call chain (protobuf decoding, the engine) outgrows a new
	// goroutine's first stack, and growing it was a tenth of the server's
	// CPU when every stream had a goroutine of its own; a worker keeps its
	// grown stack. A stream that finds every worker busy still gets a
	// goroutine of its own. Zero means 64 per GOMAXPROCS; negative means
	// none (a goroutine per stream).
	StreamWorkers int
	// MaxReceiveBytes is the largest CheckRequest accepted, in bytes. It
	// must sit well above the max_request_bytes of Envoy's with_request_body
	// (64 KiB in the shipped configurations) plus the headers. A larger
	// message is refused by the transport before it is read (gRPC
	// RESOURCE_EXHAUSTED, no decision), and is logged and counted through
	// OnUndecided. Zero means DefaultMaxReceiveBytes.
	MaxReceiveBytes int
	// OnUndecided, if set, is called for every RPC that ended with an error
	// before the service could decide it: reason is "too_large" (over
	// MaxReceiveBytes), "undecodable" (not a CheckRequest) or "other". It
	// must be fast and safe for concurrent use.
	OnUndecided func(ctx context.Context, reason string, err error)
	// Logger receives a warning per undecided RPC (at most one per second,
	// with a count of those suppressed). Nil discards them.
	Logger *slog.Logger
	// ServerOptions are appended, e.g. a stats handler for telemetry.
	ServerOptions []grpc.ServerOption
}

// DefaultMaxReceiveBytes is GRPCOptions.MaxReceiveBytes when zero: 8 MiB,
// far above the 64 KiB of body that the shipped Envoy configurations forward
// (max_request_bytes) plus Envoy's default 60 KiB limit on request headers.
// Raise it with them.
const DefaultMaxReceiveBytes = 8 << 20

// streamWorkersPerProc is the default number of stream workers per
// GOMAXPROCS. The transport hands a stream only to a worker that is idle at
// that moment, and it may read many streams before any worker runs, so a
// few per processor would leave most streams to new goroutines.
const streamWorkersPerProc = 64

// The transport defaults of GRPCOptions.
const (
	DefaultMaxConcurrentStreams = 1024
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	DefaultKeepaliveMinTime     = 5 * time.Second
)

// TransportOptions returns the gRPC server options for o's transport
// settings, with their defaults applied: concurrent streams, the receive
// limit, keepalive and stream workers. NewGRPCServer serves with them, and
// adds the codec, TLS and o.ServerOptions. The no-op baseline of the load
// benchmark (cmd/noopauthz) serves with them too, so that the two cannot
// drift apart.
func TransportOptions(o GRPCOptions) ([]grpc.ServerOption, error) {
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = DefaultKeepaliveTime
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if o.StreamWorkers == 0 {
		o.StreamWorkers = streamWorkersPerProc * runtime.GOMAXPROCS(0)
	}
	if o.MaxReceiveBytes == 0 {
		o.MaxReceiveBytes = DefaultMaxReceiveBytes
	}
	if o.MaxReceiveBytes < 0 {
		return nil, fmt.Errorf("extauthz: max receive bytes %d must be positive (server.max_receive_bytes)", o.MaxReceiveBytes)
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(o.MaxReceiveBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.KeepaliveMinTime, PermitWithoutStream: true}),
	}
	if o.StreamWorkers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(o.StreamWorkers)))
	}
	return opts, nil
}

// NewGRPCServer returns a gRPC server with s registered as the
// Authorization service, the grpc.health.v1 service reporting SERVING for
// the server ("") and for envoy.service.auth.v3.Authorization, and
// reflection when enabled. Call Drain to stop it.
func (s *Server) NewGRPCServer(o GRPCOptions) (*grpc.Server, *health.Server, error) {
	opts, err := o.serverOptions()
	if err != nil {
		return nil, nil, err
	}
	gs := grpc.NewServer(opts...)
	gs.RegisterService(newUndecided(o.OnUndecided, o.Logger).serviceDesc(), s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	if o.Reflection {
		reflection.Register(gs)
	}
	return gs, hs, nil
}

// serverOptions returns every gRPC server option of o, with its defaults
// applied: the transport's (TransportOptions), the codec, TLS and
// o.ServerOptions. The access log service's own listener serves with them
// too.
func (o GRPCOptions) serverOptions() ([]grpc.ServerOption, error) {
	opts, err := TransportOptions(o)
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.ForceServerCodecV2(newLenientCodec()))
	if o.CertFile != "" || o.KeyFile != "" || o.ClientCAFile != "" {
		cfg, err := serverTLS(o.CertFile, o.KeyFile, o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	return append(opts, o.ServerOptions...), nil
}

// serverTLS loads the server certificate and, for mTLS, the client CAs.
func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("extauthz: TLS needs both a certificate and a key file (server.tls.cert_file and key_file)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("extauthz: load TLS key pair %s, %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("extauthz: read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("extauthz: client CA file %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Drain stops gs gracefully: health turns NOT_SERVING (so Envoy's health
// checks move traffic away), no new RPCs are accepted, and in-flight Checks
// may finish within grace; then the server is stopped hard. It reports
// whether the grace period ran out.
func Drain(gs *grpc.Server, hs *health.Server, grace time.Duration) (forced bool) {
	if hs != nil {
		hs.Shutdown()
	}
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		// Stop cancels the in-flight handlers' contexts; it does not wait
		// for a handler that ignores its context.
		gs.Stop()
		return true
	}
}
