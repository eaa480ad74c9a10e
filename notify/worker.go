package notify

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// ChannelStats counts one channel's deliveries. All counts are since New.
type ChannelStats struct {
	// Sent counts deliveries that succeeded (for email, one per message).
	Sent uint64 `json:"sent"`
	// Failed counts attempts that failed, retried or not.
	Failed uint64 `json:"failed"`
	// Retried counts attempts after the first.
	Retried uint64 `json:"retried"`
	// DeadLettered counts deliveries given up on: after the last retry, or
	// at once for a permanent error such as an HTTP 400 or an SMTP 550.
	DeadLettered uint64 `json:"dead_lettered"`
	// Dropped counts deliveries refused because the channel's queue was
	// full, or abandoned at shutdown. For the dashboard, it counts alerts
	// that a slow subscriber missed.
	Dropped uint64 `json:"dropped"`
}

type channelCounters struct {
	sent, failed, retried, deadLettered, dropped atomic.Uint64
}

func (c *channelCounters) snapshot() ChannelStats {
	return ChannelStats{
		Sent:         c.sent.Load(),
		Failed:       c.failed.Load(),
		Retried:      c.retried.Load(),
		DeadLettered: c.deadLettered.Load(),
		Dropped:      c.dropped.Load(),
	}
}

// retryPolicy says how often and how long to retry a failed delivery.
type retryPolicy struct {
	maxRetries int // -1 means never retry
	backoff    time.Duration
	maxBackoff time.Duration
}

// wait returns the pause before retry number n (0 for the first retry):
// the backoff doubled n times, capped, with the upper half jittered.
func (p retryPolicy) wait(n int) time.Duration {
	d := p.backoff
	for i := 0; i < n && d < p.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.maxBackoff)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// permanentError marks a delivery error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// delivery is one unit of work for a channel: an alert (or one email
// message for it) and the function that sends it.
type delivery struct {
	alertID uuid.UUID
	send    func(ctx context.Context) error
}

// worker delivers one channel's queue, one delivery at a time, retrying
// with backoff. Its queue is bounded; a full queue drops and counts.
type worker struct {
	channel Channel
	queue   chan delivery
	policy  retryPolicy
	timeout time.Duration
	stats   channelCounters
	log     *slog.Logger
}

// offer queues d without blocking and reports whether it was queued.
func (w *worker) offer(d delivery) bool {
	select {
	case w.queue <- d:
		return true
	default:
		w.stats.dropped.Add(1)
		return false
	}
}

// run delivers until the queue is closed or ctx is done; what is still
// queued when ctx is done is counted as dropped.
func (w *worker) run(ctx context.Context) {
	for {
		select {
		case d, ok := <-w.queue:
			if !ok {
				return
			}
			w.deliver(ctx, d)
		case <-ctx.Done():
			for range len(w.queue) {
				w.stats.dropped.Add(1)
			}
			return
		}
	}
}

// deliver sends d, retrying by the policy, and counts the outcome. A
// delivery cut short because ctx is done counts as dropped.
func (w *worker) deliver(ctx context.Context, d delivery) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			w.stats.retried.Add(1)
		}
		actx, cancel := context.WithTimeout(ctx, w.timeout)
		err := d.send(actx)
		cancel()
		if err == nil {
			w.stats.sent.Add(1)
			return
		}
		w.stats.failed.Add(1)
		if ctx.Err() != nil {
			w.stats.dropped.Add(1)
			return
		}
		var perm permanentError
		if errors.As(err, &perm) || attempt >= w.policy.maxRetries {
			w.stats.deadLettered.Add(1)
			w.log.Warn("notify: alert dead-lettered", "channel", w.channel.String(),
				"alert_id", d.alertID.String(), "attempts", attempt+1, "err", err)
			return
		}
		w.log.Debug("notify: delivery failed, retrying", "channel", w.channel.String(),
			"alert_id", d.alertID.String(), "attempt", attempt+1, "err", err)
		if !sleep(ctx, w.policy.wait(attempt)) {
			w.stats.dropped.Add(1)
			return
		}
	}
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
