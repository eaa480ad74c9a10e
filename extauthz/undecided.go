package extauthz

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// undecided sees the Checks that the transport or the codec refused
// before the service could decide them, such as a CheckRequest over the
// receive limit, which grpc-go refuses with RESOURCE_EXHAUSTED without
// reading it. It logs them (rate-limited) and reports them to a callback,
// so that no Check goes unrecorded. It hooks the one place such a refusal
// passes through, the method handler's decode step, so a decided Check
// pays nothing for it (a stats handler would cost every RPC its events).
// It is safe for concurrent use.
type undecided struct {
	on     func(ctx context.Context, reason string, err error)
	logger *slog.Logger

	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

func newUndecided(on func(context.Context, string, error), logger *slog.Logger) *undecided {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &undecided{on: on, logger: logger}
}

// serviceDesc is the Authorization service as authv3 describes it, with
// Check's handler replaced by u.check.
func (u *undecided) serviceDesc() *grpc.ServiceDesc {
	desc := authv3.Authorization_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i := range desc.Methods {
		if desc.Methods[i].MethodName == "Check" {
			desc.Methods[i].Handler = u.check
		}
	}
	return &desc
}

// check is the generated Check handler with two changes: a request that
// cannot be decoded is recorded before the error goes back to the client,
// and the policy is loaded once, before decoding, so that the request is
// decoded for the policy that decides it (lenientCodec decodes only what
// the policy reads; see checkDecode). srv is the *Server that NewGRPCServer
// registered.
func (u *undecided) check(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	p := s.pol.Load()
	in := new(authv3.CheckRequest)
	if err := dec(&checkDecode{req: in, metadata: p.Identity.usesJWT()}); err != nil {
		u.record(ctx, err)
		return nil, err
	}
	if interceptor == nil {
		return s.check(ctx, p, in), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.check(ctx, p, req.(*authv3.CheckRequest)), nil
	})
}

// record reports and logs a Check that ended with err before a decision.
func (u *undecided) record(ctx context.Context, err error) {
	st := status.Convert(err)
	reason := undecidedReason(st)
	if reason == "" {
		return
	}
	if u.on != nil {
		u.on(ctx, reason, err)
	}
	u.mu.Lock()
	now := time.Now()
	if now.Sub(u.last) < time.Second {
		u.suppressed++
		u.mu.Unlock()
		return
	}
	u.last = now
	suppressed := u.suppressed
	u.suppressed = 0
	u.mu.Unlock()
	u.logger.Warn("extauthz: a Check was refused before it could be decided",
		"reason", reason, "grpc_code", st.Code().String(), "error", st.Message(), "suppressed", suppressed)
}

// undecidedReason classifies a failed RPC: "too_large", "undecodable",
// "other", or "" for the ends that are not a failure to decide (the client
// gave up or the server is shutting down).
func undecidedReason(st *status.Status) string {
	switch {
	case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max"):
		return "too_large"
	case st.Code() == codes.Internal && strings.Contains(st.Message(), "unmarshal"):
		return "undecodable"
	case st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Unavailable:
		return ""
	}
	return "other"
}
