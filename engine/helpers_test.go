package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the tests use named zones whatever the machine has
)

var (
	hour   = Period{Calendar: "hour", Every: time.Hour}
	day    = Period{Calendar: "day", Every: 24 * time.Hour}
	minute = Period{Calendar: "minute", Every: time.Minute}
	month  = Period{Calendar: "month", Every: 30 * 24 * time.Hour}
)

// t0 is 2026-03-02 10:00:00 UTC, a Monday.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func sliding() *WindowMode { m := WindowSliding; return &m }

// newEngine builds an engine for cfg with a clock fixed at t0 unless cfg
// sets one.
func newEngine(t testing.TB, cfg testConfig) *Engine {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	e, err := New(cfg.Rules, cfg.Options)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// chargeAt charges req at now and fails the test on an error.
func chargeAt(t testing.TB, e *Engine, now time.Time, req Request) Decision {
	t.Helper()
	d, err := e.ChargeAt(context.Background(), now, req)
	if err != nil {
		t.Fatalf("ChargeAt(%s, %+v): %v", now.Format(time.RFC3339Nano), req, err)
	}
	return d
}

// admitN charges req n times at now and fails unless all are allowed.
func admitN(t testing.TB, e *Engine, now time.Time, req Request, n int) {
	t.Helper()
	for i := range n {
		if d := chargeAt(t, e, now, req); !d.Allowed {
			t.Fatalf("charge %d of %d at %s: refused with %v (%s)", i+1, n, now, d.Reason, d.Message)
		}
	}
}

func status(t testing.TB, e *Engine, now time.Time, key string) SubjectStatus {
	t.Helper()
	s, err := e.StatusAt(context.Background(), now, key)
	if err != nil {
		t.Fatalf("StatusAt(%q): %v", key, err)
	}
	return s
}

// limitUsed returns the Used of the limit named name in s.
func limitUsed(t testing.TB, s SubjectStatus, name string) int64 {
	t.Helper()
	for _, l := range s.Limits {
		if l.Name == name {
			return l.Used
		}
	}
	t.Fatalf("status of %q has no limit %q: %+v", s.Subject, name, s.Limits)
	return 0
}

// recorder is an Events sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Emit(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) count(kind EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// oneTier is a config with a single tier "standard" holding limits.
func oneTier(limits ...LimitConfig) testConfig {
	return testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {Priority: PriorityMedium, Limits: limits}}}}
}

// testConfig is what a test builds an engine from: the Rules and the
// Options, kept together so that a test can set either by field name.
type testConfig struct {
	Rules
	Options
}

func (c testConfig) Validate() error { return errors.Join(c.Rules.Validate(), c.Options.Validate()) }

func (c testConfig) withDefaults() testConfig {
	return testConfig{Rules: c.Rules.withDefaults(), Options: c.Options.withDefaults()}
}
