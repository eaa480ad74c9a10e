package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/notify"
	"github.com/quotagate/quotagate/store/durable"
	"github.com/quotagate/quotagate/telemetry"
)

// observer is the extauthz.Options.Observe hook: once per Check it
// records the span, metrics and rejection log line, counts the request for
// the anomaly detector, feeds the dashboard and queues the ledger record.
// Everything but the ledger in sync mode is a non-blocking call.
type observer struct {
	rec      *telemetry.Recorder
	notifier *notify.Notifier
	admin    *admin.Server
	writer   *ledger.Writer
	// commit commits the state and the record of a Check in one
	// transaction (durability sync, one SQLite file); nil otherwise.
	commit *durable.Committer
	// sync waits for each ledger record to be committed (durability sync).
	sync bool
	now  func() time.Time
	// ledgerErrors counts records that were not committed before their
	// Check was answered in sync mode (the writer retries them).
	ledgerErrors metric.Int64Counter
}

func (o *observer) observe(ctx context.Context, start time.Time, in *extauthz.Input, v *extauthz.Verdict) {
	ctx = o.rec.ExtractIncoming(ctx, in.Headers)
	traced := o.rec.Record(ctx, start, telemetryDecision(in, v))
	d := &v.Decision
	if d.UnknownAction != "" {
		outcome := engine.UnknownActionPrice.String()
		if d.Reason == engine.ReasonUnknownAction {
			outcome = engine.UnknownActionDeny.String()
		}
		o.rec.RecordUnknownAction(ctx, outcome)
	}
	if v.Err != nil || d.ID == uuid.Nil {
		// No decision was made: nothing was charged or refused by a quota.
		// A charge whose wait was cut short still has state to commit.
		o.commitState(ctx, d)
		return
	}
	// The trace the decision is in: its own span's when one was kept (a
	// child of the propagated trace, or a new trace), else the propagated
	// one; none for an untraced allow.
	var traceID string
	if sc := trace.SpanContextFromContext(traced); sc.HasTraceID() {
		traceID = sc.TraceID().String()
	}
	now := o.now()
	if o.notifier != nil {
		o.notifier.Observe(d.Subject, d.Tier, now)
	}
	if o.admin != nil {
		o.admin.Observe(admin.EventOf(d, traceID, now))
	}
	if o.writer == nil {
		o.commitState(ctx, d)
		return
	}
	r := ledger.FromDecision(d, traceID, now)
	switch {
	case o.commit != nil:
		if err := o.commit.Commit(ctx, d.Unsaved, &r); err != nil {
			o.syncError(ctx)
			o.writer.Append(r)
		}
	case o.sync:
		if err := o.writer.AppendWait(ctx, r); err != nil {
			o.syncError(ctx)
		}
	default:
		o.writer.Append(r)
	}
}

// commitState commits the state a decision without a ledger record
// changed. A failure needs no action here: the committer keeps the state
// for its next save.
func (o *observer) commitState(ctx context.Context, d *engine.Decision) {
	if o.commit != nil && len(d.Unsaved) > 0 {
		_ = o.commit.Commit(ctx, d.Unsaved, nil)
	}
}

func (o *observer) syncError(ctx context.Context) {
	if o.ledgerErrors != nil {
		o.ledgerErrors.Add(context.WithoutCancel(ctx), 1)
	}
}

// newNotifier builds the alert notifier from the alerts block.
func newNotifier(file *config.File, o assembleOptions) (*notify.Notifier, error) {
	cfg, err := notifyConfig(file)
	if err != nil {
		return nil, fmt.Errorf("serve: alerts: %w", err)
	}
	n, err := notify.New(cfg, notify.Options{Logger: o.Logger, Getenv: o.Getenv})
	if err != nil {
		return nil, fmt.Errorf("serve: alerts: %w", err)
	}
	return n, nil
}

// newAdmin builds the admin server when an address is configured; it
// returns nil otherwise.
func newAdmin(file *config.File, o assembleOptions, a *app) (*admin.Server, error) {
	cfg, err := adminConfig(file)
	if err != nil {
		return nil, fmt.Errorf("serve: admin API: %w", err)
	}
	if o.AdminAddr != "" {
		cfg.Addr = o.AdminAddr
	}
	if cfg.Addr == "" {
		return nil, nil
	}
	opts := admin.Options{Config: cfg, Engine: a.eng, Alerts: a.notifier, Logger: o.Logger,
		ConfigStatus: a.configStatus, Degraded: a.degraded}
	if a.backends.Ledger != nil {
		opts.Ledger = a.backends.Ledger // an interface holding a nil pointer would not read as "no ledger"
	}
	s, err := admin.New(opts)
	if err != nil {
		return nil, fmt.Errorf("serve: admin API: %w (tokens are configured under admin.tokens)", err)
	}
	return s, nil
}

// registerMetrics adds the metrics of the parts telemetry does not know:
// configuration reloads, the shared store's health, the ledger writer and
// the notifier.
func (a *app) registerMetrics(prov *telemetry.Providers) error {
	m := prov.MeterProvider.Meter("github.com/quotagate/quotagate/cmd/quotagate")
	reloads, err := m.Int64ObservableCounter("quota.config.reloads",
		metric.WithDescription("Configuration reloads, by outcome (applied or refused)."))
	if err != nil {
		return err
	}
	ledgerRecs, err := m.Int64ObservableCounter("quota.ledger.records",
		metric.WithDescription("Ledger records, by state: appended (queued), overflowed (summarised into spill records), written (committed)."))
	if err != nil {
		return err
	}
	ledgerQueued, err := m.Int64ObservableGauge("quota.ledger.queued",
		metric.WithDescription("Ledger records waiting to be written."))
	if err != nil {
		return err
	}
	alerts, err := m.Int64ObservableCounter("quota.alerts",
		metric.WithDescription("Alerts, by state: received, deduplicated, dropped."))
	if err != nil {
		return err
	}
	storeUp, err := m.Int64ObservableGauge("quota.store.up",
		metric.WithDescription("1 while the shared store (Redis) answers, 0 while it does not and each tier's failure mode applies; absent without Redis."))
	if err != nil {
		return err
	}
	if a.obs.ledgerErrors, err = m.Int64Counter("quota.ledger.sync_errors",
		metric.WithDescription("Checks answered in durability sync before their ledger record was committed (the writer retries it).")); err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		if w := a.watcher; w != nil {
			st := w.Status()
			ob.ObserveInt64(reloads, int64(st.Generation), metric.WithAttributes(attrOutcome("applied")))
			ob.ObserveInt64(reloads, int64(st.Failures), metric.WithAttributes(attrOutcome("refused")))
		}
		if w := a.backends.Writer; w != nil {
			st := w.Stats()
			ob.ObserveInt64(ledgerRecs, st.Appended, metric.WithAttributes(attrState("appended")))
			ob.ObserveInt64(ledgerRecs, st.Overflowed, metric.WithAttributes(attrState("overflowed")))
			ob.ObserveInt64(ledgerRecs, st.Written, metric.WithAttributes(attrState("written")))
			ob.ObserveInt64(ledgerQueued, int64(st.Queued))
		}
		if r := a.backends.Redis; r != nil {
			up := int64(0)
			if r.Healthy() {
				up = 1
			}
			ob.ObserveInt64(storeUp, up)
		}
		if n := a.notifier; n != nil {
			st := n.Stats()
			ob.ObserveInt64(alerts, int64(st.Received), metric.WithAttributes(attrState("received")))
			ob.ObserveInt64(alerts, int64(st.Deduplicated), metric.WithAttributes(attrState("deduplicated")))
			ob.ObserveInt64(alerts, int64(st.Dropped), metric.WithAttributes(attrState("dropped")))
		}
		return nil
	}, reloads, ledgerRecs, ledgerQueued, alerts, storeUp)
	return err
}

func attrOutcome(v string) attribute.KeyValue { return attribute.String("outcome", v) }
func attrState(v string) attribute.KeyValue   { return attribute.String("state", v) }
