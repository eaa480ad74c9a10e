package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"google.golang.org/grpc/metadata"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// SpanName is the name of the one span recorded per Check.
const SpanName = "quota.check"

// instrumentationName names the tracer and meter.
const instrumentationName = "github.com/quotagate/quotagate/telemetry"

// defaultLogRate is the rejection log budget per second when
// RecorderOptions.LogRejectionsPerSecond is zero.
const defaultLogRate = 10

// RecorderOptions configures a Recorder. The zero value records spans and
// metrics and logs nothing.
type RecorderOptions struct {
	// RawSubject puts the subject id in spans and logs as quota.subject;
	// by default only its SHA-256 (hex) goes in, as quota.subject_hash.
	RawSubject bool
	// Logger receives one info line per rejection (warn for an error
	// outcome), with the decision id and the trace and span ids. Nil means
	// no rejection logs.
	Logger *slog.Logger
	// LogRejectionsPerSecond caps rejection log lines so that a flood
	// cannot fill a disk; the next line that passes reports how many were
	// suppressed. Zero means 10 per second; negative means no rejection
	// logs at all.
	LogRejectionsPerSecond float64
	// EngineStats, if set, is called at each metric collection for the
	// engine cache, shard and event metrics. It must be fast and safe for
	// concurrent use.
	EngineStats func() EngineStats
	// TierStats, if set, is called at each metric collection for the
	// per-tier limit and utilization gauges.
	TierStats func() []TierStat
	// PendingStats, if set, is called at each metric collection for the
	// gauge of decisions awaiting settlement and the count of those
	// dropped.
	PendingStats func() PendingStats
	// Now is the clock that ends a span and measures latency; nil means
	// time.Now.
	Now func() time.Time
}

// Recorder turns decisions into a span, metrics and a rejection log line.
// It is safe for concurrent use.
type Recorder struct {
	tracer trace.Tracer
	// tracing is false when spans go nowhere: Record then skips them.
	tracing bool
	// sampleAllowed is the probability of keeping a root allow's span.
	sampleAllowed float64
	prop          propagation.TextMapPropagator
	meter         metric.Meter
	in            *instruments
	checks        checkCounters
	settle        *settleInstruments
	opts          RecorderOptions
	lim           *limiter
	once          sync.Once
}

// NewRecorder returns a Recorder using p's providers. A nil p gives a
// Recorder whose spans and metrics go nowhere, with the W3C trace-context
// propagator, which still logs.
func NewRecorder(p *Providers, opts RecorderOptions) (*Recorder, error) {
	var (
		tp   trace.TracerProvider          = tracenoop.NewTracerProvider()
		mp   metric.MeterProvider          = metricnoop.NewMeterProvider()
		prop propagation.TextMapPropagator = propagation.TraceContext{}
	)
	tracing, sampleAllowed := false, 0.0
	if p != nil {
		tp, mp, prop, tracing, sampleAllowed = p.TracerProvider, p.MeterProvider, p.Propagator, p.tracing, p.sampleAllowed
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Recorder{
		tracer:        tp.Tracer(instrumentationName),
		tracing:       tracing,
		sampleAllowed: sampleAllowed,
		meter:         mp.Meter(instrumentationName),
		prop:          prop,
		opts:          opts,
	}
	rate := opts.LogRejectionsPerSecond
	if rate == 0 {
		rate = defaultLogRate
	}
	if rate > 0 && opts.Logger != nil {
		r.lim = newLimiter(rate)
	}
	in, err := newInstruments(r.meter)
	if err != nil {
		return nil, err
	}
	r.in = in
	if r.checks, err = newCheckCounters(r.meter); err != nil {
		return nil, err
	}
	if r.settle, err = newSettleInstruments(r.meter); err != nil {
		return nil, err
	}
	if opts.PendingStats != nil {
		if err := in.observePending(r.meter, opts.PendingStats); err != nil {
			return nil, err
		}
	}
	if opts.EngineStats != nil {
		if err := in.observeEngine(r.meter, opts.EngineStats); err != nil {
			return nil, err
		}
	}
	if opts.TierStats != nil {
		if err := in.observeTiers(r.meter, opts.TierStats); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Close unregisters the metric callbacks. It is idempotent.
func (r *Recorder) Close() error {
	var errs []error
	r.once.Do(func() {
		for _, reg := range r.in.regs {
			errs = append(errs, reg.Unregister())
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: close recorder: %w", err)
	}
	return nil
}

// Extract returns ctx with the trace context of the incoming Check: from
// the gRPC metadata first (where Envoy's ext_authz client puts it), and,
// when that has none, from the HTTP headers of the checked request. Which
// formats are read (W3C traceparent, B3) follows the propagator chosen by
// OTEL_PROPAGATORS. Either map may be nil; keys are expected in lower
// case, as gRPC metadata and Envoy's CheckRequest have them.
func (r *Recorder) Extract(ctx context.Context, grpcMetadata map[string][]string, httpHeaders map[string]string) context.Context {
	if len(grpcMetadata) > 0 {
		if c := r.prop.Extract(ctx, mdCarrier(grpcMetadata)); trace.SpanContextFromContext(c).IsValid() {
			return c
		}
	}
	if len(httpHeaders) > 0 {
		return r.prop.Extract(ctx, propagation.MapCarrier(httpHeaders))
	}
	return ctx
}

// ExtractIncoming is Extract with the gRPC metadata of ctx's incoming call
// (metadata.FromIncomingContext), read where it is: the propagator looks up
// only the keys it reads, instead of a copy of every key being made first.
func (r *Recorder) ExtractIncoming(ctx context.Context, httpHeaders map[string]string) context.Context {
	if c := r.prop.Extract(ctx, incomingCarrier{ctx}); trace.SpanContextFromContext(c).IsValid() {
		return c
	}
	if len(httpHeaders) > 0 {
		return r.prop.Extract(ctx, propagation.MapCarrier(httpHeaders))
	}
	return ctx
}

// incomingCarrier reads the incoming gRPC metadata of ctx as a
// propagation.TextMapCarrier; it is read-only.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	return mdCarrier(md).Keys()
}

// mdCarrier adapts gRPC metadata (lower-case keys, several values) to a
// propagation.TextMapCarrier.
type mdCarrier map[string][]string

func (c mdCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	if v := c[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

func (c mdCarrier) Keys() []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	return ks
}

// Record records one Check that started at start and was decided as d: the
// decision metrics, the quota.check span (started at start, so that the
// decision-aware sampler sees d.Outcome), its child spans for d.Phases, and
// a rate-limited log line for a rejection. ctx should come from Extract.
// It returns ctx with the quota.check span in it when one was started, so
// that the caller can tie the ledger record to the trace the decision is
// in: the span's trace when it was kept, else the propagated one, if any.
// An allow that no sampler would keep starts no span.
func (r *Recorder) Record(ctx context.Context, start time.Time, d Decision) context.Context {
	end := r.opts.Now()
	r.in.record(ctx, &d, end.Sub(start))
	if r.tracing {
		if keep, pctx := r.presample(ctx, d.Outcome); keep {
			ctx = r.span(pctx, start, end, &d)
		}
	}
	if d.Outcome != OutcomeAllow && r.lim != nil {
		r.logRejection(ctx, &d, end)
	}
	return ctx
}

// RecordStoreOp records the latency of one store operation ("load",
// "save"); op must come from a small fixed set.
func (r *Recorder) RecordStoreOp(ctx context.Context, op string, elapsed time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	r.in.storeLatency.Record(ctx, elapsed.Seconds(), r.in.storeSets.get(setKey{tier: op, decision: outcome}).rec...)
}

// presample decides, without starting a span, what the sampler would
// decide for an allow, so that the common case (an allow that is not
// kept) costs no span at all: under a remote parent that Envoy did not
// sample, an allow is never kept; with no parent, it is kept with
// probability SampleAllowed, and the returned context tells the sampler
// that the lottery was already drawn. Rejections, and allows under a
// sampled parent, are left to the sampler.
func (r *Recorder) presample(ctx context.Context, o Outcome) (bool, context.Context) {
	if o != OutcomeAllow {
		return true, ctx
	}
	psc := trace.SpanContextFromContext(ctx)
	switch {
	case psc.IsValid() && psc.IsSampled():
		return true, ctx
	case psc.IsValid():
		return false, ctx
	case r.sampleAllowed <= 0 || rand.Float64() >= r.sampleAllowed:
		return false, ctx
	}
	return true, context.WithValue(ctx, presampledKey{}, true)
}

// span records the quota.check span and its children, and returns ctx
// with the span in it. Every attribute is given at the start, so that the
// sampler sees the decision and the SDK copies them once.
func (r *Recorder) span(ctx context.Context, start, end time.Time, d *Decision) context.Context {
	ctx, span := r.tracer.Start(ctx, SpanName,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start),
		trace.WithAttributes(r.attributes(d)...))
	if span.IsRecording() {
		if d.Outcome != OutcomeAllow {
			span.AddEvent("quota.rejected", trace.WithTimestamp(end),
				trace.WithAttributes(keyMessage.String(d.Message), keyReason.String(d.Reason)))
		}
		if d.Outcome == OutcomeError {
			desc := "no decision could be made"
			if d.Err != nil {
				desc = d.Err.Error()
			}
			span.SetStatus(codes.Error, desc)
		}
		for _, ph := range d.Phases {
			_, child := r.tracer.Start(ctx, ph.Name, trace.WithTimestamp(ph.Start))
			if ph.Err != nil {
				child.SetStatus(codes.Error, ph.Err.Error())
			}
			child.End(trace.WithTimestamp(ph.Start.Add(ph.Duration)))
		}
	}
	span.End(trace.WithTimestamp(end))
	return ctx
}

// attributes returns the span attributes of d, quota.decision first.
func (r *Recorder) attributes(d *Decision) []attribute.KeyValue {
	kvs := make([]attribute.KeyValue, 0, 24)
	kvs = append(kvs, keyDecision.String(string(d.Outcome)))
	kvs = appendString(kvs, keyReason, d.Reason)
	kvs = appendString(kvs, keyTier, d.Tier)
	kvs = appendString(kvs, keyPriority, d.Priority)
	kvs = appendString(kvs, keyAction, d.Action)
	kvs = appendString(kvs, keyWorkflow, d.Workflow)
	kvs = append(kvs, keyCost.Int64(d.Cost), keyUnits.Int64(d.Units))
	if d.LimitName != "" {
		kvs = append(kvs, keyLimitName.String(d.LimitName), keyLimit.Int64(d.Limit), keyRemaining.Int64(d.Remaining))
		if !d.Reset.IsZero() {
			kvs = append(kvs, keyReset.String(d.Reset.UTC().Format(time.RFC3339)))
		}
	}
	if d.HasBalance {
		kvs = append(kvs, keyBalance.Int64(d.BalanceAfter))
	}
	kvs = appendString(kvs, keyDecisionID, d.DecisionID)
	kvs = appendString(kvs, keyFailureMode, d.FailureModeApplied)
	if d.Subject != "" {
		kvs = append(kvs, r.subjectAttr(d.Subject))
	}
	kvs = appendString(kvs, keyMethod, d.Method)
	kvs = appendString(kvs, keyPath, StripQuery(d.Path))
	if d.HTTPStatus != 0 {
		kvs = append(kvs, keyStatus.Int(d.HTTPStatus))
	}
	return kvs
}

func appendString(kvs []attribute.KeyValue, k attribute.Key, v string) []attribute.KeyValue {
	if v == "" {
		return kvs
	}
	return append(kvs, k.String(v))
}

// subjectAttr returns the subject attribute as configured: hashed by default.
func (r *Recorder) subjectAttr(subject string) attribute.KeyValue {
	if r.opts.RawSubject {
		return keySubject.String(subject)
	}
	return keySubjectHash.String(HashSubject(subject))
}

// HashSubject returns the lower-case hex SHA-256 of subject, the value of
// quota.subject_hash: `printf %s alice | sha256sum` finds a user's spans.
func HashSubject(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:])
}

// StripQuery returns path without its query string and fragment.
func StripQuery(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// logRejection writes the rejection's log line if the budget allows.
func (r *Recorder) logRejection(ctx context.Context, d *Decision, now time.Time) {
	ok, suppressed := r.lim.allow(now)
	if !ok {
		return
	}
	level, msg := slog.LevelInfo, "quota rejected"
	if d.Outcome == OutcomeError {
		level, msg = slog.LevelWarn, "quota undecided"
	}
	if !r.opts.Logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("decision_id", d.DecisionID),
		slog.String("decision", string(d.Outcome)),
		slog.String("reason", d.Reason),
		slog.String("tier", d.Tier),
		slog.String("action", d.Action),
		slog.String("limit", d.LimitName),
		slog.Int("status", d.HTTPStatus))
	if d.Subject != "" {
		a := r.subjectAttr(d.Subject)
		attrs = append(attrs, slog.String(strings.TrimPrefix(string(a.Key), "quota."), a.Value.AsString()))
	}
	if d.FailureModeApplied != "" {
		attrs = append(attrs, slog.String("failure_mode_applied", d.FailureModeApplied))
	}
	if d.Err != nil {
		attrs = append(attrs, slog.String("error", d.Err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	r.opts.Logger.LogAttrs(ctx, level, msg, attrs...)
}
