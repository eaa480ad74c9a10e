package extauthz

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// undecidedStats is a gRPC stats handler that sees the RPCs the transport
// or the codec ended before the service decided them, such as a
// CheckRequest over the receive limit, which grpc-go refuses with
// RESOURCE_EXHAUSTED without reading it and without calling the service.
// It logs them (rate-limited) and reports them to a callback, so that no
// Check goes unrecorded. It is safe for concurrent use.
type undecidedStats struct {
	on     func(ctx context.Context, reason string, err error)
	logger *slog.Logger

	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

func newUndecidedStats(on func(context.Context, string, error), logger *slog.Logger) *undecidedStats {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &undecidedStats{on: on, logger: logger}
}

func (h *undecidedStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *undecidedStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *undecidedStats) HandleConn(context.Context, stats.ConnStats) {}

// HandleRPC acts on the end of an RPC that failed: Check itself never
// returns an error, so a failed RPC is one that was never decided.
func (h *undecidedStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.Error == nil {
		return
	}
	st := status.Convert(end.Error)
	reason := undecidedReason(st)
	if reason == "" {
		return
	}
	if h.on != nil {
		h.on(ctx, reason, end.Error)
	}
	h.mu.Lock()
	now := time.Now()
	if now.Sub(h.last) < time.Second {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	h.last = now
	suppressed := h.suppressed
	h.suppressed = 0
	h.mu.Unlock()
	h.logger.Warn("extauthz: a Check was refused before it could be decided",
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
