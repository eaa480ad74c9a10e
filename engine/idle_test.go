package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }

// plainStore is a MemoryStore that cannot forget: the reference that
// keeps everything.
type plainStore struct{ m *MemoryStore }

func (p plainStore) Load(ctx context.Context, key string) (Snapshot, bool, error) {
	return p.m.Load(ctx, key)
}
func (p plainStore) Save(ctx context.Context, s []Snapshot) error { return p.m.Save(ctx, s) }

// idleConfig has calendar, sliding and duration windows, a monthly and a
// daily grant and priced actions, so that every part of idleness is
// exercised.
func idleConfig(store Store, cacheSize int, now func() time.Time) testConfig {
	cfg := idleConfigTiers(store, cacheSize, now)
	delete(cfg.Tiers, "basic")
	return cfg
}

// idleConfigTiers is idleConfig with a third tier, basic, that has no token
// grant: a subject that moves to it keeps spending what is left of its
// allowance, so that state is not idle. A subject that moves between free
// and pro moves between grant periods that differ (a month, a day): the
// period that is running keeps its end, which is saved with the state.
func idleConfigTiers(store Store, cacheSize int, now func() time.Time) testConfig {
	return testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{
			"free": {Priority: PriorityLow,
				Limits: []LimitConfig{
					{Period: hour, Max: 5},
					{Period: day, Max: 12},
					{Name: "burst", Period: Period{Every: 15 * time.Minute}, Max: 3, Mode: sliding()},
				},
				Tokens: TokenGrant{Amount: 40, Period: month}},
			"pro": {Priority: PriorityHigh,
				Limits: []LimitConfig{{Period: minute, Max: 4}},
				Tokens: TokenGrant{Amount: 100, Period: day}},
			"basic": {Priority: PriorityMedium, Limits: []LimitConfig{{Period: hour, Max: 8}}},
		},
		DefaultTier: "free",
		Actions:     map[string]ActionConfig{"translate": {PerCall: 3}, "summarize": {PerCall: 1, PerThousand: 10}},
		Users:       map[string]UserConfig{"gifted": {Credits: 7}, "pro-user": {Tier: "pro"}},
	}, Options: Options{
		Shards:    1,
		CacheSize: cacheSize,
		Store:     store,
		Now:       now,
	}}
}

func TestIdleStateIsDroppedFromMemoryStore(t *testing.T) {
	c := newClock(t0)
	store := NewMemoryStore()
	e := newEngine(t, idleConfig(store, 16, c.now))
	ctx := context.Background()
	const n = 500
	for i := range n {
		chargeAt(t, e, c.now(), Request{Subject: fmt.Sprintf("user-%d", i), Action: "translate"})
		if i%50 == 0 {
			if err := e.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Subjects evicted while their windows ran were saved: usage is live.
	if got := store.Len(); got < n-16 {
		t.Fatalf("store holds %d states after %d subjects each used once, want them saved", got, n)
	}
	// Live usage is never dropped, however often the store is swept.
	for range 4 {
		if err := e.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.Len(); got < n-16 {
		t.Fatalf("store holds %d states; a sweep dropped live usage", got)
	}
	// Credits and profiles are kept whatever the time.
	if _, err := e.AddCredits(ctx, "buyer", 5); err != nil {
		t.Fatal(err)
	}
	if err := e.SetProfile(ctx, "vip", Profile{Tier: "pro"}); err != nil {
		t.Fatal(err)
	}

	// Past every window and grant period: every subject is idle.
	c.set(t0.AddDate(0, 2, 0))
	for range n/sweepBatch + 2 {
		if err := e.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Evict what the cache still holds with new idle-to-be subjects.
	for i := range 64 {
		chargeAt(t, e, c.now(), Request{Subject: fmt.Sprintf("late-%d", i)})
	}
	c.set(t0.AddDate(0, 4, 0))
	for i := range 64 {
		chargeAt(t, e, c.now(), Request{Subject: fmt.Sprintf("later-%d", i)})
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	store.mu.Lock()
	for k := range store.snaps {
		kept[k] = true
	}
	store.mu.Unlock()
	for _, k := range []string{"buyer", "vip"} {
		if !kept[k] {
			t.Errorf("%s's state was dropped; it holds credits or a profile", k)
		}
	}
	// What is left is the cache's recent subjects and the two above.
	if got, bound := len(kept), 16+64+2; got > bound {
		t.Errorf("store holds %d states after every subject went idle, want at most %d (cache + last batch + kept)", got, bound)
	}
	// A dropped subject comes back with fresh state.
	d := chargeAt(t, e, c.now(), Request{Subject: "user-1", Action: "translate"})
	if !d.Allowed || d.Balance != 37 {
		t.Errorf("user-1 back after going idle: allowed %v, balance %d; want allowed with 40-3", d.Allowed, d.Balance)
	}
}

// TestEvictionMatchesReference runs random charges, credits and clock steps
// against an engine with a tiny cache over a MemoryStore that drops idle
// state, and against one that never evicts: every decision must be the
// same, so dropping idle state loses nothing and invents nothing.
func TestEvictionMatchesReference(t *testing.T) {
	for seed := range uint64(8) {
		// Odd seeds add a tier without a grant, which trusted callers
		// (a JWT tier claim) move to and from.
		withBasic := seed%2 == 1
		t.Run(fmt.Sprintf("seed=%d/basic=%v", seed, withBasic), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x1d1e))
			c := newClock(t0)
			ctx := context.Background()
			config := idleConfig
			tiers := []Tier{""}
			if withBasic {
				config = idleConfigTiers
				tiers = []Tier{"", "", "free", "pro", "basic"}
			}
			small := newEngine(t, config(NewMemoryStore(), 4, c.now))
			ref := newEngine(t, config(plainStore{NewMemoryStore()}, 1<<16, c.now))
			subjects := []string{"gifted", "pro-user", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
			actions := []string{"", "translate", "summarize"}
			steps := []time.Duration{0, time.Second, 40 * time.Second, 7 * time.Minute, 50 * time.Minute, 5 * time.Hour, 26 * time.Hour, 33 * 24 * time.Hour}
			for op := range 2000 {
				switch r := rng.IntN(100); {
				case r < 8:
					c.set(c.now().Add(steps[rng.IntN(len(steps))]))
				case r < 10:
					s := subjects[rng.IntN(len(subjects))]
					delta := int64(rng.IntN(4) + 1)
					b1, err1 := small.AddCredits(ctx, s, delta)
					b2, err2 := ref.AddCredits(ctx, s, delta)
					if b1 != b2 || (err1 == nil) != (err2 == nil) {
						t.Fatalf("op %d: AddCredits(%s) = %d, %v; reference %d, %v", op, s, b1, err1, b2, err2)
					}
				case r < 14:
					if err := small.Flush(ctx); err != nil {
						t.Fatal(err)
					}
				default:
					req := Request{Subject: subjects[rng.IntN(len(subjects))], Action: actions[rng.IntN(len(actions))],
						Units: int64(rng.IntN(300)), Tier: tiers[rng.IntN(len(tiers))]}
					now := c.now()
					got, want := chargeAt(t, small, now, req), chargeAt(t, ref, now, req)
					if g, w := comparable(got), comparable(want); g != w {
						t.Fatalf("op %d at %s, %+v:\n got  %+v\n want %+v", op, now.Format(time.RFC3339), req, g, w)
					}
				}
			}
		})
	}
}

// decisionView is what a client sees of a Decision, without its id, and
// every limit's state after it.
type decisionView struct {
	Allowed           bool
	Reason            Reason
	Warning, Message  string
	Cost, Charged     int64
	Balance           int64
	HasBalance        bool
	BalanceOwner      string
	Tier              Tier
	RetryAfter, Delay time.Duration
	Binding, Limits   string
}

func comparable(d Decision) decisionView {
	return decisionView{Allowed: d.Allowed, Reason: d.Reason, Warning: d.Warning, Message: d.Message,
		Cost: d.Cost, Charged: d.Charged, Balance: d.Balance, HasBalance: d.HasBalance, BalanceOwner: d.BalanceOwner,
		Tier: d.Tier, RetryAfter: d.RetryAfter, Delay: d.Delay,
		Binding: fmt.Sprintf("%+v", d.Binding), Limits: fmt.Sprintf("%+v", d.Limits())}
}

// TestIdleAfterGrantPeriodsDiffer: a subject whose daily grant period
// started on the 1st and ended, then moved to a monthly grant, still has
// its allowance measured against the month that started on the 1st
// (rollGrantLocked regrants it), so its state is not idle before that
// month ends, and the grant period's end survives a reload.
func TestIdleAfterGrantPeriodsDiffer(t *testing.T) {
	first := time.Date(2026, 3, 1, 0, 10, 0, 0, time.UTC)
	cfg := func(store Store, c *clock) testConfig {
		return testConfig{Rules: Rules{
			Tiers: map[Tier]TierConfig{
				"daily":   {Tokens: TokenGrant{Amount: 100, Period: day}},
				"monthly": {Tokens: TokenGrant{Amount: 40, Period: month}},
			},
			DefaultTier: "daily",
			Actions:     map[string]ActionConfig{"op": {PerCall: 30}},
		}, Options: Options{
			Shards:    1,
			CacheSize: minShardCapacity,
			Store:     store,
			Now:       c.now,
		}}
	}
	tests := []struct {
		name  string
		later time.Time // when the subject comes back on the monthly grant
	}{
		{"after the day, within the month", first.Add(2 * 24 * time.Hour)},
		{"within the day", first.Add(time.Hour)},
		{"next month", first.AddDate(0, 1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(first)
			ctx := context.Background()
			small := newEngine(t, cfg(NewMemoryStore(), c))
			ref := newEngine(t, cfg(plainStore{NewMemoryStore()}, c))
			for _, e := range []*Engine{small, ref} {
				chargeAt(t, e, first, Request{Subject: "u", Action: "op"}) // 70 of the day's 100 left
			}
			if err := small.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			c.set(tt.later)
			for _, s := range []string{"v", "w", "x"} { // evict u, and sweep
				chargeAt(t, small, tt.later, Request{Subject: s})
			}
			if err := small.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			req := Request{Subject: "u", Tier: "monthly", Action: "op"}
			got, want := chargeAt(t, small, tt.later, req), chargeAt(t, ref, tt.later, req)
			if g, w := comparable(got), comparable(want); g != w {
				t.Fatalf("after an eviction:\n got  %+v\n want %+v", g, w)
			}
		})
	}
}
