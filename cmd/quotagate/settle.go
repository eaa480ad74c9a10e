package main

import (
	"context"
	"encoding/hex"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/durable"
	"github.com/quotagate/quotagate/telemetry"
)

// accessLog is the settlement service and, when server.access_log.addr
// gives it a listener of its own, its gRPC server.
type accessLog struct {
	als *extauthz.AccessLogService
	gs  *grpc.Server // nil: served on the ext_authz gRPC server
	hs  *health.Server
}

// assembleAccessLog builds the AccessLogService (nil when
// server.access_log.enabled is false) and registers it on the ext_authz
// gRPC server, or on a server of its own with the same transport options.
func (a *app) assembleAccessLog(cfg config.AccessLog, gopts extauthz.GRPCOptions) (*accessLog, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	s := &settler{rec: a.rec, writer: a.backends.Writer, commit: a.backends.Committer, sync: a.backends.Sync, now: time.Now}
	als, err := extauthz.NewAccessLogService(a.eng, extauthz.AccessLogOptions{
		MaxEntries: cfg.MaxEntries,
		OnSettled:  s.settled,
		OnSkipped:  a.rec.RecordSettleSkipped,
		Logger:     a.logger,
	})
	if err != nil {
		return nil, err
	}
	al := &accessLog{als: als}
	if cfg.Addr == "" {
		als.Register(a.gs)
		return al, nil
	}
	gopts.OnUndecided, gopts.Reflection = nil, false
	al.gs, al.hs, err = als.NewGRPCServer(gopts)
	return al, err
}

// settler records what each settlement did: its metrics and span, and its
// ledger record.
type settler struct {
	rec    *telemetry.Recorder
	writer *ledger.Writer
	// commit, in durability sync with the state and the ledger in one
	// file, commits a settlement's state with its ledger record, as the
	// observer does a Check's; nil otherwise.
	commit *durable.Committer
	sync   bool
	now    func() time.Time
}

// settled is extauthz.AccessLogOptions.OnSettled.
func (s *settler) settled(ctx context.Context, in *engine.Settlement, out *engine.Settled) {
	now := s.now()
	ts := telemetry.Settlement{Outcome: out.Outcome.String(), Tier: string(out.Tier), Action: out.Action,
		DecisionID: out.DecisionID.String(), Status: in.Status, Refunded: out.Refunded, Extra: out.Extra, Owed: out.Owed,
		TraceID: out.Trace.TraceID, SpanID: out.Trace.SpanID, Sampled: out.Trace.Sampled, Start: now, End: now}
	s.rec.RecordSettlement(ctx, &ts)
	var rec *ledger.Record
	if s.writer != nil {
		var traceID string
		if out.Trace.TraceID != ([16]byte{}) {
			traceID = hex.EncodeToString(out.Trace.TraceID[:])
		}
		if r, ok, err := ledger.FromSettled(out, in.Status, traceID, now); err == nil && ok {
			rec = &r
		}
	}
	switch {
	case s.commit != nil:
		// Every deferred settlement is committed, record or not: later
		// saves of its keys wait for it.
		if len(out.Unsaved) == 0 && rec == nil {
			return
		}
		if err := s.commit.Commit(ctx, out.Unsaved, rec); err != nil && rec != nil {
			s.writer.Append(*rec) // the committer keeps the state for its next save
		}
	case rec == nil:
	case s.sync:
		_ = s.writer.AppendWait(ctx, *rec) // on failure the writer keeps retrying it
	default:
		s.writer.Append(*rec)
	}
}

// pendingStats feeds the settlement gauges.
func pendingStats(eng *engine.Engine) telemetry.PendingStats {
	p := eng.PendingStats()
	return telemetry.PendingStats{Held: int64(p.Held), AgedOut: int64(p.AgedOut), Evicted: int64(p.Evicted)}
}
