package notify

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

var dayPeriod = engine.Period{Calendar: "day", Every: 24 * time.Hour}

// event returns an engine event of kind for subject's "day" limit in the
// window starting at window.
func event(kind engine.EventKind, subject string, window time.Time) engine.Event {
	used := int64(90)
	if kind == engine.EventBreach {
		used = 100
	}
	return engine.Event{
		Kind:    kind,
		Time:    window.Add(3 * time.Hour),
		Subject: subject,
		Tier:    "freemium",
		Limit: engine.LimitStatus{
			Name: "day", Period: dayPeriod, Limit: 100, Used: used, Remaining: 100 - used,
			Reset: window.Add(24 * time.Hour),
		},
		Window:     window,
		DecisionID: uuid.MustParse("0193a5b4-0000-7000-8000-000000000001"),
	}
}

// newNotifier returns a Notifier for cfg with the fixed clock, failing
// the test on error.
func newNotifier(t *testing.T, cfg Config, opts Options) *Notifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	n, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// start runs n in the background. The returned function closes n and
// waits for Run to deliver what was queued and return.
func start(t *testing.T, n *Notifier) (finish func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	finished := false
	finish = func() {
		t.Helper()
		if finished {
			return
		}
		finished = true
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return within 20s of Close")
		}
		cancel()
	}
	t.Cleanup(finish)
	return finish
}
