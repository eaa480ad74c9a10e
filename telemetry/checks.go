package telemetry

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// checkCounters count the Checks that are not plain decisions: those the
// transport refused before any decision (too large, undecodable), and the
// requests that named an action without a price.
type checkCounters struct {
	undecided      metric.Int64Counter
	unknownActions metric.Int64Counter
}

func newCheckCounters(m metric.Meter) (checkCounters, error) {
	var c checkCounters
	var err1, err2 error
	c.undecided, err1 = m.Int64Counter("quota.checks.undecided",
		metric.WithDescription("Checks that ended before a decision could be made, by reason (too_large: over server.max_receive_bytes; undecodable; other). Each is also logged."),
		metric.WithUnit("{check}"))
	c.unknownActions, err2 = m.Int64Counter("quota.unknown_actions",
		metric.WithDescription("Requests whose action has no price in quota_manager.actions, by what they got (deny, or price as the configured action)."),
		metric.WithUnit("{request}"))
	if err := errors.Join(err1, err2); err != nil {
		return c, fmt.Errorf("telemetry: check counters: %w", err)
	}
	return c, nil
}

// RecordUndecided counts one Check that ended before a decision; reason
// must come from a small fixed set ("too_large", "undecodable", "other").
func (r *Recorder) RecordUndecided(ctx context.Context, reason string) {
	r.checks.undecided.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

// RecordUnknownAction counts one request whose action has no price;
// outcome is "deny" or "price" (the unknown_actions policy), never the
// action's name, which a client may choose.
func (r *Recorder) RecordUnknownAction(ctx context.Context, outcome string) {
	r.checks.unknownActions.Add(ctx, 1, metric.WithAttributes(mkOutcome.String(outcome)))
}
