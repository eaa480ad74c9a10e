package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// SettleSpanName is the span a settlement adds to its decision's trace.
const SettleSpanName = "quota.settle"

// Span attributes of a settlement.
const (
	keySettleOutcome  = attribute.Key("quota.settle.outcome")
	keySettleRefunded = attribute.Key("quota.settle.refunded")
	keySettleExtra    = attribute.Key("quota.settle.extra")
	keySettleOwed     = attribute.Key("quota.settle.owed")
	keySettleStatus   = attribute.Key("http.response.status_code")
)

// Settlement is one settlement of a decision from its access log entry,
// as the Recorder sees it. Outcome is one of a small fixed set (refund,
// adjust, kept, unmatched, duplicate, aged_out, invalid). Amounts are
// tokens.
type Settlement struct {
	Outcome, Tier, Action string
	DecisionID            string
	Status                int
	Refunded, Extra, Owed int64
	// TraceID and SpanID are the trace context the decision was made in
	// (zero: none); the settlement's span is its child there.
	TraceID [16]byte
	SpanID  [8]byte
	Sampled bool
	// Start and End bound the settlement.
	Start, End time.Time
}

// PendingStats describes the decisions awaiting their settlement, read
// at each metric collection through RecorderOptions.PendingStats.
type PendingStats struct {
	// Held is how many are held now.
	Held int64
	// AgedOut and Evicted count those dropped, for age and for room,
	// since start.
	AgedOut, Evicted int64
}

// settleInstruments count settlements.
type settleInstruments struct {
	settlements metric.Int64Counter
	tokens      metric.Int64Counter
	skipped     metric.Int64Counter
	sets        setCache
	tokenSets   setCache
}

func newSettleInstruments(m metric.Meter) (*settleInstruments, error) {
	s := &settleInstruments{
		sets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkOutcome.String(k.decision), mkTier.String(k.tier))
		}},
		tokenSets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(attribute.String("kind", k.decision), mkTier.String(k.tier))
		}},
	}
	var errs [3]error
	s.settlements, errs[0] = m.Int64Counter("quota.settlements",
		metric.WithDescription("Access log entries settled against their decisions, by outcome (refund, adjust, kept, unmatched, duplicate, aged_out, invalid) and tier."),
		metric.WithUnit("{entry}"))
	s.tokens, errs[1] = m.Int64Counter("quota.settlement.tokens",
		metric.WithDescription("Tokens settlements moved, by kind (refunded; extra: charged on top for actual usage; owed: extra the balance could not cover) and tier."),
		metric.WithUnit("{token}"))
	s.skipped, errs[2] = m.Int64Counter("quota.settlements.skipped",
		metric.WithDescription("Access log entries that reached no settlement, by reason (no_decision, malformed, oversized, tcp, error)."),
		metric.WithUnit("{entry}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("telemetry: settlement instruments: %w", err)
	}
	return s, nil
}

// observePending registers the pending-decision gauge and counters.
func (in *instruments) observePending(m metric.Meter, stats func() PendingStats) error {
	held, err1 := m.Int64ObservableGauge("quota.settlements.pending",
		metric.WithDescription("Allowed decisions held for their settlement."), metric.WithUnit("{decision}"))
	dropped, err2 := m.Int64ObservableCounter("quota.settlements.pending.dropped",
		metric.WithDescription("Pending decisions dropped before their access log entry came, by reason (aged_out: older than server.access_log.pending_max_age; evicted: over pending_size)."),
		metric.WithUnit("{decision}"))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("telemetry: pending instruments: %w", err)
	}
	aged := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "aged_out")))
	evicted := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "evicted")))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(held, s.Held)
		o.ObserveInt64(dropped, s.AgedOut, aged)
		o.ObserveInt64(dropped, s.Evicted, evicted)
		return nil
	}, held, dropped)
	if err != nil {
		return fmt.Errorf("telemetry: pending callback: %w", err)
	}
	in.regs = append(in.regs, reg)
	return nil
}

// RecordSettlement counts s and, when the decision's trace context is
// known and its sampling keeps it, adds a short quota.settle span under
// the decision's parent span with an event carrying the outcome and
// amounts. It is safe for concurrent use.
func (r *Recorder) RecordSettlement(ctx context.Context, s *Settlement) {
	in := r.settle
	in.settlements.Add(ctx, 1, in.sets.get(setKey{decision: s.Outcome, tier: s.Tier}).add...)
	for _, t := range [...]struct {
		kind string
		n    int64
	}{{"refunded", s.Refunded}, {"extra", s.Extra}, {"owed", s.Owed}} {
		if t.n > 0 {
			in.tokens.Add(ctx, t.n, in.tokenSets.get(setKey{decision: t.kind, tier: s.Tier}).add...)
		}
	}
	if !r.tracing || s.TraceID == ([16]byte{}) || s.SpanID == ([8]byte{}) {
		return
	}
	var flags trace.TraceFlags
	if s.Sampled {
		flags = trace.FlagsSampled
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.SpanID, TraceFlags: flags, Remote: true})
	attrs := []attribute.KeyValue{keySettleOutcome.String(s.Outcome), keySettleRefunded.Int64(s.Refunded),
		keySettleExtra.Int64(s.Extra), keySettleOwed.Int64(s.Owed)}
	_, span := r.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, parent), SettleSpanName,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(s.Start),
		trace.WithAttributes(append(attrs, keyDecisionID.String(s.DecisionID), keySettleStatus.Int(s.Status), keyTier.String(s.Tier))...))
	if span.IsRecording() {
		span.AddEvent("quota.settled", trace.WithTimestamp(s.End), trace.WithAttributes(attrs...))
	}
	span.End(trace.WithTimestamp(s.End))
}

// RecordSettleSkipped counts n access log entries that reached no
// settlement; reason must come from a small fixed set.
func (r *Recorder) RecordSettleSkipped(ctx context.Context, reason string, n int) {
	r.settle.skipped.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", reason)))
}
