package notify

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

func dashboardConfig() Config {
	return Config{Enabled: true, Channels: []Channel{ChannelDashboard}}
}

func TestDedupThousandEventsPastThresholdGiveOneAlert(t *testing.T) {
	n := newNotifier(t, dashboardConfig(), Options{})
	finish := start(t, n)
	// 1000 requests past 90% of alice's daily limit, from 8 goroutines, as a
	// misbehaving engine (or several replicas' reloads) might report them.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 125 {
				ev := event(engine.EventThreshold, "alice", t0)
				ev.Limit.Used = int64(90 + (g*125+i)%10)
				n.Emit(ev)
			}
		})
	}
	wg.Wait()
	finish()

	got := n.Recent(0)
	if len(got) != 1 {
		t.Fatalf("Recent = %d alerts, want 1", len(got))
	}
	if got[0].Kind != KindThreshold || got[0].Subject != "alice" || got[0].Message != "Approaching daily limit." {
		t.Errorf("alert = %+v, want a threshold alert for alice saying \"Approaching daily limit.\"", got[0])
	}
	s := n.Stats()
	if s.Received != 1000 || s.Deduplicated != 999 || s.Dropped != 0 || s.Channels["dashboard"].Sent != 1 {
		t.Errorf("Stats = %+v, want 1000 received, 999 deduplicated, 0 dropped, 1 sent", s)
	}
}

func TestDedupKey(t *testing.T) {
	base := event(engine.EventThreshold, "alice", t0)
	tests := []struct {
		name   string
		second func(engine.Event) engine.Event
		want   int // alerts
	}{
		{"same kind, subject, limit and window", func(e engine.Event) engine.Event { e.Limit.Used = 95; return e }, 1},
		{"another window", func(e engine.Event) engine.Event { e.Window = t0.Add(24 * time.Hour); return e }, 2},
		{"another limit", func(e engine.Event) engine.Event { e.Limit.Name = "hour"; return e }, 2},
		{"another subject", func(e engine.Event) engine.Event { e.Subject = "bob"; return e }, 2},
		{"another kind", func(e engine.Event) engine.Event { e.Kind = engine.EventBreach; return e }, 2},
		{"no window, same day", func(e engine.Event) engine.Event {
			e.Window, e.Time = time.Time{}, t0.Add(time.Hour)
			return e
		}, 2},
		{"subject and limit split differently", func(e engine.Event) engine.Event {
			e.Subject, e.Limit.Name = "alice\x00d", "ay"
			return e
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifier(t, dashboardConfig(), Options{})
			n.Emit(base)
			n.Emit(tt.second(base))
			start(t, n)()
			if got := len(n.Recent(0)); got != tt.want {
				t.Errorf("alerts = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDedupWithoutWindowIsDaily(t *testing.T) {
	n := newNotifier(t, dashboardConfig(), Options{})
	for _, at := range []time.Duration{0, time.Hour, 13 * time.Hour, 24 * time.Hour, 30 * time.Hour, 48 * time.Hour} {
		ev := event(engine.EventBalanceLow, "alice", time.Time{})
		ev.Limit, ev.Window, ev.Time, ev.Balance = engine.LimitStatus{}, time.Time{}, t0.Add(at), 5
		n.Emit(ev)
	}
	start(t, n)()
	if got := len(n.Recent(0)); got != 3 {
		t.Errorf("balance alerts without a window over three days = %d, want one per day (3)", got)
	}
}

func TestEmitNeverBlocksWhenQueueIsFull(t *testing.T) {
	cfg := dashboardConfig()
	cfg.QueueSize = 4
	n := newNotifier(t, cfg, Options{})
	// Run is not running: nothing drains the queue.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			n.Emit(event(engine.EventThreshold, "alice", t0.Add(time.Duration(i)*24*time.Hour)))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a full queue")
	}
	if s := n.Stats(); s.Received != 10 || s.Dropped != 6 {
		t.Errorf("Stats = %+v, want 10 received and 6 dropped", s)
	}
	// A dropped alert is forgotten by dedup, so a later copy gets through.
	n.Emit(event(engine.EventThreshold, "alice", t0.Add(9*24*time.Hour)))
	if s := n.Stats(); s.Dropped != 7 || s.Deduplicated != 0 {
		t.Errorf("after re-emitting a dropped alert: Stats = %+v, want it dropped again, not deduplicated", s)
	}
	start(t, n)()
	if got := len(n.Recent(0)); got != 4 {
		t.Errorf("alerts delivered = %d, want the 4 that were queued", got)
	}
}

func TestEmitConvertsEvents(t *testing.T) {
	tests := []struct {
		name    string
		kind    engine.EventKind
		want    Kind
		message string
	}{
		{"threshold", engine.EventThreshold, KindThreshold, "Approaching daily limit."},
		{"breach", engine.EventBreach, KindBreach, "Quota exceeded. Upgrade your plan or wait for the reset."},
		{"balance low", engine.EventBalanceLow, KindBalanceLow, "Your token balance is running low."},
		{"insufficient balance", engine.EventInsufficientBalance, KindInsufficientBalance,
			"Insufficient token balance. Upgrade your plan or add credits."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifier(t, dashboardConfig(), Options{})
			ev := event(tt.kind, "alice", t0)
			n.Emit(ev)
			start(t, n)()
			got := n.Recent(1)
			if len(got) != 1 {
				t.Fatalf("Recent = %d alerts, want 1", len(got))
			}
			a := got[0]
			if a.Kind != tt.want || a.Message != tt.message {
				t.Errorf("kind, message = %v, %q; want %v, %q", a.Kind, a.Message, tt.want, tt.message)
			}
			if a.ID.Version() != 7 || a.DecisionID != ev.DecisionID || !a.Time.Equal(ev.Time) ||
				a.Limit != "day" || a.Period != "day" || a.Max != 100 || !a.Window.Equal(t0) {
				t.Errorf("alert = %+v, want a UUIDv7 id and the event's fields", a)
			}
		})
	}
}

func TestEmitIgnoresUnknownKindsAndDisabledConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ev   engine.Event
	}{
		{"unknown kind", dashboardConfig(), engine.Event{Kind: 99, Subject: "alice"}},
		{"alerts disabled", Config{Channels: []Channel{ChannelDashboard}}, event(engine.EventBreach, "alice", t0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifier(t, tt.cfg, Options{})
			n.Emit(tt.ev)
			start(t, n)()
			if got := n.Recent(0); len(got) != 0 {
				t.Errorf("Recent = %+v, want nothing", got)
			}
		})
	}
}

func TestDashboardRecentAckSubscribe(t *testing.T) {
	cfg := dashboardConfig()
	cfg.Dashboard.Size = 3
	n := newNotifier(t, cfg, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	sub := n.Subscribe(ctx)
	finish := start(t, n)
	for i := range 5 {
		n.Emit(event(engine.EventThreshold, "alice", t0.Add(time.Duration(i)*24*time.Hour)))
	}
	var streamed []Alert
	for range 5 {
		select {
		case a := <-sub:
			streamed = append(streamed, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber got %d alerts, want 5", len(streamed))
		}
	}
	finish()
	cancel()
	if _, open := <-sub; open {
		t.Error("subscription still open after its context was cancelled")
	}

	recent := n.Recent(0)
	if len(recent) != 3 {
		t.Fatalf("Recent(0) = %d alerts, want the ring's 3", len(recent))
	}
	for i, a := range recent {
		if want := streamed[4-i]; a.ID != want.ID {
			t.Errorf("Recent[%d] = %v, want %v (newest first)", i, a.ID, want.ID)
		}
	}
	if got := n.Recent(1); len(got) != 1 || got[0].ID != streamed[4].ID {
		t.Errorf("Recent(1) = %+v, want the newest alert", got)
	}

	if err := n.Ack(recent[1].ID); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := n.Ack(streamed[0].ID); !errors.Is(err, ErrUnknownAlert) {
		t.Errorf("Ack of an alert pushed out of the ring = %v, want ErrUnknownAlert", err)
	}
	if err := n.Ack(uuid.New()); !errors.Is(err, ErrUnknownAlert) {
		t.Errorf("Ack of an unknown id = %v, want ErrUnknownAlert", err)
	}
	after := n.Recent(0)
	if !after[1].Acked || !after[1].AckedAt.Equal(t0) || after[0].Acked || after[2].Acked {
		t.Errorf("after Ack: acked = %v %v %v, want only the middle one, at t0", after[0].Acked, after[1].Acked, after[2].Acked)
	}
}

func TestNoDashboard(t *testing.T) {
	n := newNotifier(t, Config{Enabled: true}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	sub := n.Subscribe(ctx)
	cancel()
	if _, open := <-sub; open {
		t.Error("subscription without a dashboard received an alert")
	}
	if got := n.Recent(10); got != nil {
		t.Errorf("Recent = %v, want nil", got)
	}
	if err := n.Ack(uuid.New()); !errors.Is(err, ErrUnknownAlert) {
		t.Errorf("Ack = %v, want ErrUnknownAlert", err)
	}
}

func TestRunLifecycle(t *testing.T) {
	n := newNotifier(t, dashboardConfig(), Options{})
	n.running.Store(true) // as if another Run were under way
	if err := n.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	n.running.Store(false)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(ctx); err != nil {
		t.Errorf("Run with a cancelled context = %v, want nil", err)
	}
	for range 2 {
		if err := n.Close(); err != nil {
			t.Errorf("Close = %v, want nil (idempotent)", err)
		}
	}
	n.Emit(event(engine.EventBreach, "alice", t0))
	for range 2 {
		if err := n.Run(context.Background()); err != nil {
			t.Errorf("Run after Close = %v, want nil", err)
		}
	}
	if s := n.Stats(); s.Received != 0 {
		t.Errorf("Emit after Close was received: %+v", s)
	}
}
