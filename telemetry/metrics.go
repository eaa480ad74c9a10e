package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// EngineStats is a snapshot of the engine's counters, read at each metric
// collection through RecorderOptions.EngineStats. Counters are cumulative
// since start.
type EngineStats struct {
	CacheHits, CacheMisses, CacheEvictions int64
	// Subjects is how many subjects (and teams) are cached now.
	Subjects int64
	// Shards is the number of lock stripes.
	Shards int
	// EventsEmitted and EventsDropped count alert events handed to (or
	// dropped by) the event sink.
	EventsEmitted, EventsDropped int64
}

// TierStat is the configured limit and the current aggregate utilization
// of one limit of one tier, read through RecorderOptions.TierStats. It is
// an aggregate over the tier's subjects, never a per-user figure.
type TierStat struct {
	Tier  string
	Limit string // the limit's name, e.g. "hour"
	Max   int64  // the configured maximum per window
	// Utilization is the aggregate usage over the limit, 0 to 1 (it may
	// exceed 1 when the engine admits delayed requests); it is reported
	// only when HasUtilization. Without it, quota.limit.utilization (a
	// histogram fed by every decision) gives the same view.
	Utilization    float64
	HasUtilization bool
}

// maxAttrSets bounds the distinct metric attribute sets per instrument.
// Past it, tier, reason and action are reported as "other".
const maxAttrSets = 2048

// setKey identifies one attribute set of the decision counters.
type setKey struct{ tier, decision, reason, action string }

// attrOpts is one attribute set, with the measurement options made from
// it ready to pass, so that recording allocates nothing.
type attrOpts struct {
	set attribute.Set
	add []metric.AddOption
	rec []metric.RecordOption
}

// setCache memoizes attribute sets so that the hot path builds (and sorts)
// each one once. It is safe for concurrent use.
type setCache struct {
	m     sync.Map // setKey -> *attrOpts
	n     atomic.Int64
	build func(setKey) attribute.Set
}

func (c *setCache) get(k setKey) *attrOpts {
	if s, ok := c.m.Load(k); ok {
		return s.(*attrOpts)
	}
	if c.n.Load() >= maxAttrSets {
		k = setKey{tier: "other", decision: k.decision, reason: "other", action: "other"}
		if s, ok := c.m.Load(k); ok {
			return s.(*attrOpts)
		}
	}
	set := c.build(k)
	opt := metric.WithAttributeSet(set)
	s, loaded := c.m.LoadOrStore(k, &attrOpts{set: set, add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}})
	if !loaded {
		c.n.Add(1)
	}
	return s.(*attrOpts)
}

// instruments are the Recorder's metric instruments.
type instruments struct {
	decisions    metric.Int64Counter
	latency      metric.Float64Histogram
	tokens       metric.Int64Counter
	storeLatency metric.Float64Histogram
	utilization  metric.Float64Histogram
	decisionSets setCache
	utilSets     setCache
	storeSets    setCache
	tokenSets    setCache
	latencySets  setCache
	// recordSets memoizes, per decision shape, the four sets that record
	// looks up in the caches above, so that a decision costs one lookup
	// rather than four.
	recordSets recordCache
	regs       []metric.Registration
}

// recordKey is the shape of a decision that picks record's attribute
// sets: its tier, outcome, reason, action, binding limit, and whether it
// charged tokens.
type recordKey struct {
	tier, decision, reason, action, limit string
	charged                               bool
}

// recordOpts are the attribute sets of one recordKey, from the
// per-instrument caches (so each cache's bound and "other" apply exactly
// as when looked up one at a time, and only the sets of the instruments
// record feeds are made). util is nil without a limit, tokens without a
// charge.
type recordOpts struct{ decision, latency, util, tokens *attrOpts }

// recordCache memoizes recordOpts, for at most maxAttrSets keys; past that
// record looks the sets up one at a time. It is safe for concurrent use.
type recordCache struct {
	m sync.Map // recordKey -> *recordOpts
	n atomic.Int64
}

// sets returns the attribute sets of k from in's caches.
func (in *instruments) sets(k recordKey) *recordOpts {
	if s, ok := in.recordSets.m.Load(k); ok {
		return s.(*recordOpts)
	}
	o := &recordOpts{
		decision: in.decisionSets.get(setKey{tier: k.tier, decision: k.decision, reason: k.reason, action: k.action}),
		latency:  in.latencySets.get(setKey{tier: k.tier, decision: k.decision}),
	}
	if k.charged {
		o.tokens = in.tokenSets.get(setKey{tier: k.tier, action: k.action})
	}
	if k.limit != "" {
		o.util = in.utilSets.get(setKey{tier: k.tier, reason: k.limit})
	}
	if in.recordSets.n.Load() < maxAttrSets {
		if _, loaded := in.recordSets.m.LoadOrStore(k, o); !loaded {
			in.recordSets.n.Add(1)
		}
	}
	return o
}

// utilizationBuckets are fractions of a limit.
var utilizationBuckets = []float64{0.1, 0.25, 0.5, 0.75, 0.9, 1}

// latencyBuckets suit a Check that takes tens of microseconds in memory
// and milliseconds when the store is involved; in seconds.
var latencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

func newInstruments(m metric.Meter) (*instruments, error) {
	in := &instruments{
		decisionSets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkTier.String(k.tier), mkDecision.String(k.decision), mkReason.String(k.reason), mkAction.String(k.action))
		}},
		tokenSets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkTier.String(k.tier), mkAction.String(k.action))
		}},
		storeSets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkOp.String(k.tier), mkOutcome.String(k.decision))
		}},
		utilSets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkTier.String(k.tier), mkLimit.String(k.reason))
		}},
		latencySets: setCache{build: func(k setKey) attribute.Set {
			return attribute.NewSet(mkTier.String(k.tier), mkDecision.String(k.decision))
		}},
	}
	var errs [5]error
	in.decisions, errs[0] = m.Int64Counter("quota.decisions",
		metric.WithDescription("Check decisions by tier, decision (allow, deny, error), reason and action."),
		metric.WithUnit("{decision}"))
	in.latency, errs[1] = m.Float64Histogram("quota.check.duration",
		metric.WithDescription("Time from receiving a Check to its decision, by tier and decision."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	in.tokens, errs[2] = m.Int64Counter("quota.tokens.charged",
		metric.WithDescription("Tokens deducted from balances, by tier and action."),
		metric.WithUnit("{token}"))
	in.storeLatency, errs[3] = m.Float64Histogram("quota.store.duration",
		metric.WithDescription("Store operation latency, by operation and outcome."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	in.utilization, errs[4] = m.Float64Histogram("quota.limit.utilization",
		metric.WithDescription("Usage over the maximum of the binding limit after each decision, by tier and limit (0 to 1): the aggregate utilization of a tier is its mean."),
		metric.WithUnit("1"), metric.WithExplicitBucketBoundaries(utilizationBuckets...))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	return in, nil
}

// observeEngine registers the observable instruments fed by stats.
func (in *instruments) observeEngine(m metric.Meter, stats func() EngineStats) error {
	var (
		errs                                                        [7]error
		hits, misses, evictions, subjects, shards, emitted, dropped metric.Int64Observable
	)
	hits, errs[0] = m.Int64ObservableCounter("quota.engine.cache.hits", metric.WithDescription("Subject cache hits."))
	misses, errs[1] = m.Int64ObservableCounter("quota.engine.cache.misses", metric.WithDescription("Subject cache misses (loads from the store)."))
	evictions, errs[2] = m.Int64ObservableCounter("quota.engine.cache.evictions", metric.WithDescription("Subjects evicted from the cache to the store."))
	subjects, errs[3] = m.Int64ObservableGauge("quota.engine.cache.subjects", metric.WithDescription("Subjects held in the cache."))
	shards, errs[4] = m.Int64ObservableGauge("quota.engine.shards", metric.WithDescription("Lock stripes of the engine."))
	emitted, errs[5] = m.Int64ObservableCounter("quota.events.emitted", metric.WithDescription("Alert events emitted by the engine."))
	dropped, errs[6] = m.Int64ObservableCounter("quota.events.dropped", metric.WithDescription("Alert events dropped because the sink was full."))
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("telemetry: engine instruments: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		o.ObserveInt64(hits, s.CacheHits)
		o.ObserveInt64(misses, s.CacheMisses)
		o.ObserveInt64(evictions, s.CacheEvictions)
		o.ObserveInt64(subjects, s.Subjects)
		o.ObserveInt64(shards, int64(s.Shards))
		o.ObserveInt64(emitted, s.EventsEmitted)
		o.ObserveInt64(dropped, s.EventsDropped)
		return nil
	}, hits, misses, evictions, subjects, shards, emitted, dropped)
	if err != nil {
		return fmt.Errorf("telemetry: engine callback: %w", err)
	}
	in.regs = append(in.regs, reg)
	return nil
}

// observeTiers registers the per-tier limit and utilization gauges.
func (in *instruments) observeTiers(m metric.Meter, stats func() []TierStat) error {
	limit, err1 := m.Int64ObservableGauge("quota.tier.limit", metric.WithDescription("Configured maximum per window, by tier and limit."))
	util, err2 := m.Float64ObservableGauge("quota.tier.utilization",
		metric.WithDescription("Aggregate usage over the configured maximum, by tier and limit (0 to 1)."), metric.WithUnit("1"))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("telemetry: tier instruments: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, s := range stats() {
			if i >= maxAttrSets {
				break
			}
			set := metric.WithAttributeSet(attribute.NewSet(mkTier.String(s.Tier), mkLimit.String(s.Limit)))
			o.ObserveInt64(limit, s.Max, set)
			if s.HasUtilization {
				o.ObserveFloat64(util, s.Utilization, set)
			}
		}
		return nil
	}, limit, util)
	if err != nil {
		return fmt.Errorf("telemetry: tier callback: %w", err)
	}
	in.regs = append(in.regs, reg)
	return nil
}

// record adds one decision to the counters and the latency histogram.
func (in *instruments) record(ctx context.Context, d *Decision, elapsed time.Duration) {
	k := recordKey{tier: d.Tier, decision: string(d.Outcome), reason: d.Reason, action: d.Action, charged: d.Charged > 0}
	utilized := d.LimitName != "" && d.Limit > 0
	if utilized {
		k.limit = d.LimitName
	}
	sets := in.sets(k)
	in.decisions.Add(ctx, 1, sets.decision.add...)
	in.latency.Record(ctx, elapsed.Seconds(), sets.latency.rec...)
	if utilized {
		u := float64(d.Limit-d.Remaining) / float64(d.Limit)
		in.utilization.Record(ctx, u, sets.util.rec...)
	}
	if k.charged {
		in.tokens.Add(ctx, d.Charged, sets.tokens.add...)
	}
}
