package extauthz

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/quotagate/quotagate/engine"
)

// ExtAuthzFilter is the name under which Envoy keeps the dynamic metadata
// a Check returned; its "decision_id" joins a log entry to its decision.
const ExtAuthzFilter = "envoy.filters.http.ext_authz"

// Reasons a log entry is skipped without a settlement, as passed to
// AccessLogOptions.OnSkipped.
const (
	SkipNoDecision = "no_decision" // no decision id in the metadata or headers
	SkipMalformed  = "malformed"   // a decision id that is not a UUID, or a bad status
	SkipOversized  = "oversized"   // a batch over MaxEntries, or headers over the bounds
	SkipTCP        = "tcp"         // a TCP log entry: nothing to settle
	SkipError      = "error"       // the engine could not apply the settlement
)

// Bounds on what a log entry may carry into a settlement. Envoy logs only
// the headers its configuration names, so real entries are far below them.
const (
	// DefaultMaxLogEntries is AccessLogOptions.MaxEntries when zero.
	DefaultMaxLogEntries = 1000
	// maxSettleHeaders is how many response headers are read from one entry.
	maxSettleHeaders = 64
	// maxSettleHeaderBytes bounds one header's name plus value.
	maxSettleHeaderBytes = 8 << 10
)

// Settler settles a decision from its response; *engine.Engine is one.
// It must not keep the Settlement's Headers, which are reused.
type Settler interface {
	Settle(ctx context.Context, s engine.Settlement) (engine.Settled, error)
}

// AccessLogOptions configures an AccessLogService. The zero value of each
// field means its documented default.
type AccessLogOptions struct {
	// MaxEntries bounds the log entries of one message; a larger message is
	// skipped whole (counted as oversized) and the stream goes on. Zero
	// means DefaultMaxLogEntries.
	MaxEntries int
	// OnSettled, if set, is called for every settlement the engine made
	// or refused (duplicate, unmatched, aged out, invalid), with what the
	// entry said (in, whose Headers are valid only during the call) and
	// the outcome (out). It must be safe for concurrent use; it runs on
	// the stream's goroutine.
	OnSettled func(ctx context.Context, in *engine.Settlement, out *engine.Settled)
	// OnSkipped, if set, is called for every entry that reached no
	// settlement, with one of the Skip* reasons (n entries at once).
	OnSkipped func(ctx context.Context, reason string, n int)
	// Logger receives a warning per settlement the engine could not apply
	// (at most one per second). Nil discards them.
	Logger *slog.Logger
}

// AccessLogService is the envoy.service.accesslog.v3.AccessLogService that
// settles charges from Envoy's HTTP access log. It is safe for concurrent
// use; each stream is read on its own goroutine.
type AccessLogService struct {
	alsv3.UnimplementedAccessLogServiceServer
	settler Settler
	o       AccessLogOptions
	lastLog atomic.Int64 // unix ns of the last warning
	// quit is closed by Shutdown.
	quit     chan struct{}
	quitOnce sync.Once
}

// NewAccessLogService returns the service that settles through settler.
func NewAccessLogService(settler Settler, o AccessLogOptions) (*AccessLogService, error) {
	if settler == nil {
		return nil, errors.New("extauthz: access log service needs a settler (the engine)")
	}
	if o.MaxEntries < 0 {
		return nil, errors.New("extauthz: access log max entries must be positive (server.access_log.max_entries)")
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxLogEntries
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &AccessLogService{settler: settler, o: o, quit: make(chan struct{})}, nil
}

// shutdownLinger is how long a stream goes on reading after Shutdown, for
// the batches Envoy had already sent.
const shutdownLinger = 200 * time.Millisecond

// Shutdown ends every stream, now and to come, once it has been quiet
// for a moment: Envoy's access logger keeps its stream open for as long
// as it runs, which a graceful stop would otherwise wait for. Envoy then
// connects to another replica. It is idempotent.
func (a *AccessLogService) Shutdown() {
	a.quitOnce.Do(func() { close(a.quit) })
}

// Register registers the service on gs, which must be a server from
// NewGRPCServer (its codec decodes only what settlement reads).
func (a *AccessLogService) Register(gs *grpc.Server) {
	desc := alsv3.AccessLogService_ServiceDesc
	desc.Streams = slices.Clone(desc.Streams)
	for i := range desc.Streams {
		if desc.Streams[i].StreamName == "StreamAccessLogs" {
			desc.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
				return srv.(*AccessLogService).stream(stream)
			}
		}
	}
	gs.RegisterService(&desc, a)
}

// StreamAccessLogs implements alsv3.AccessLogServiceServer, for a server
// with the standard codec; Register serves the same stream without
// building each message's tree.
func (a *AccessLogService) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	return a.stream(protoStream{stream})
}

// protoStream decodes alsDecode through the message tree, for a server
// whose codec does not know alsDecode.
type protoStream struct {
	alsv3.AccessLogService_StreamAccessLogsServer
}

func (p protoStream) RecvMsg(m any) error {
	msg, err := p.Recv()
	if err != nil {
		return err
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	return decodeALS(b, m.(*alsDecode))
}

// received is one message read from a stream, or the error that ended it.
type received struct {
	d   *alsDecode
	err error
}

// stream reads log batches until the client closes the stream. Nothing a
// batch holds ends the stream: an entry that cannot be settled is counted
// and skipped.
func (a *AccessLogService) stream(stream grpc.ServerStream) error {
	ctx := stream.Context()
	// A reader hands over one decoded message at a time, so that Shutdown
	// can end the stream while it waits; two buffers alternate between
	// them. It ends with the stream's context.
	msgs, free := make(chan received), make(chan *alsDecode, 2)
	free <- &alsDecode{max: a.o.MaxEntries}
	free <- &alsDecode{max: a.o.MaxEntries}
	go func() {
		for {
			var d *alsDecode
			select {
			case d = <-free:
			case <-ctx.Done():
				return
			}
			err := stream.RecvMsg(d)
			select {
			case msgs <- received{d, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var st settleScratch
	quit := a.quit
	var linger <-chan time.Time
	for {
		var r received
		select {
		case r = <-msgs:
		case <-quit:
			quit, linger = nil, time.After(shutdownLinger)
			continue
		case <-linger:
			return status.Error(codes.Unavailable, "quotagate is shutting down: send the access log to another replica")
		}
		switch {
		case errors.Is(r.err, io.EOF):
			return stream.SendMsg(&alsv3.StreamAccessLogsResponse{})
		case r.err != nil:
			if status.Code(r.err) == codes.Canceled || ctx.Err() != nil {
				return nil // the client went away; what was read is settled
			}
			return r.err
		}
		a.settleBatch(ctx, r.d, &st)
		free <- r.d
		if quit == nil {
			linger = time.After(shutdownLinger)
		}
	}
}

// settleScratch is reused across one stream's entries.
type settleScratch struct {
	headers map[string]string
}

// settleBatch settles every HTTP entry of d.
func (a *AccessLogService) settleBatch(ctx context.Context, d *alsDecode, st *settleScratch) {
	a.skip(ctx, SkipTCP, d.tcp)
	if d.http > a.o.MaxEntries {
		a.skip(ctx, SkipOversized, d.http)
		return
	}
	for i := range d.entries {
		a.settleEntry(ctx, &d.entries[i], st)
	}
}

// settleEntry settles one entry.
func (a *AccessLogService) settleEntry(ctx context.Context, e *logView, st *settleScratch) {
	s, reason := settlementOf(e, st)
	if reason != "" {
		a.skip(ctx, reason, 1)
		return
	}
	out, err := a.settler.Settle(ctx, s)
	if err != nil {
		a.skip(ctx, SkipError, 1)
		a.warn("settle: the engine could not apply a settlement; Envoy does not resend it, so its charge stays as decided",
			"decision_id", s.DecisionID.String(), "error", err.Error())
		return
	}
	if a.o.OnSettled != nil {
		a.o.OnSettled(ctx, &s, &out)
	}
}

func (a *AccessLogService) skip(ctx context.Context, reason string, n int) {
	if n > 0 && a.o.OnSkipped != nil {
		a.o.OnSkipped(ctx, reason, n)
	}
}

// warn logs at most once per second.
func (a *AccessLogService) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := a.lastLog.Load()
	if now-last < int64(time.Second) || !a.lastLog.CompareAndSwap(last, now) {
		return
	}
	a.o.Logger.Warn(msg, args...)
}

// settlementOf reads the settlement of one entry, or the reason it has
// none. The headers map in st is reused: the returned Settlement is valid
// until the next call.
func settlementOf(e *logView, st *settleScratch) (engine.Settlement, string) {
	var s engine.Settlement
	switch {
	case e.idSet && e.idBad, !e.idSet && e.headerSet && e.headBad:
		return s, SkipMalformed
	case e.idSet:
		s.DecisionID = e.id
	case e.headerSet:
		s.DecisionID = e.headerID
	default:
		return s, SkipNoDecision
	}
	if e.code > 999 {
		return s, SkipMalformed
	}
	s.Status = int(e.code)
	if s.Status != 0 && e.upstreamFailed() && !e.viaUpstream {
		// Envoy answered for an upstream that never did (a reset, a
		// timeout): that is "no response" to a settle rule.
		s.Status = 0
	}
	if e.oversized {
		return s, SkipOversized
	}
	if len(e.headers) == 0 {
		return s, ""
	}
	if st.headers == nil {
		st.headers = make(map[string]string, len(e.headers))
	}
	clear(st.headers)
	for _, h := range e.headers {
		st.headers[h.name] = h.value
	}
	s.Headers = st.headers
	return s, ""
}

// lowerASCII returns s in lower case, without allocating when it already is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// NewGRPCServer returns a gRPC server of its own for the service (the
// server.access_log.addr listener), with the transport options of o
// (TLS, message size, keepalive) and the grpc.health.v1 service reporting
// SERVING for the server ("") and for the AccessLogService. OnUndecided
// and Reflection do not apply. Call Drain to stop it.
func (a *AccessLogService) NewGRPCServer(o GRPCOptions) (*grpc.Server, *health.Server, error) {
	opts, err := o.serverOptions()
	if err != nil {
		return nil, nil, err
	}
	gs := grpc.NewServer(opts...)
	a.Register(gs)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(alsv3.AccessLogService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs, hs, nil
}
