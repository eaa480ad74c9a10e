package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBalanceRefusalChargesNoWindow(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 100})
	cfg.Actions = map[string]ActionConfig{"translate": {PerThousand: 5}}
	cfg.Users = map[string]UserConfig{"alice": {Credits: 20}}
	e := newEngine(t, cfg)
	req := Request{Subject: "alice", Action: "translate", Units: 3000}
	if d := chargeAt(t, e, t0, req); !d.Allowed || d.Charged != 15 || d.Balance != 5 {
		t.Fatalf("first: allowed=%v charged %d balance %d, want true 15 5", d.Allowed, d.Charged, d.Balance)
	}
	d := chargeAt(t, e, t0, req)
	if d.Allowed || d.Reason != ReasonInsufficientBalance || d.Charged != 0 || d.Balance != 5 {
		t.Fatalf("second: allowed=%v reason %v charged %d balance %d, want a balance refusal charging nothing", d.Allowed, d.Reason, d.Charged, d.Balance)
	}
	if got := limitUsed(t, status(t, e, t0, "alice"), "hour"); got != 1 {
		t.Errorf("hourly usage %d, want 1: the refused request must not count", got)
	}
}

func TestCosts(t *testing.T) {
	cfg := oneTier()
	cfg.Actions = map[string]ActionConfig{
		"translate": {PerThousand: 5, Unit: "words"},
		"summarize": {PerThousand: 2, Unit: "words"},
		"ocr":       {PerCall: 3, PerThousand: 1},
	}
	cfg.Tiers["standard"] = TierConfig{Tokens: TokenGrant{Unlimited: true}}
	e := newEngine(t, cfg)
	tests := []struct {
		name   string
		action string
		units  int64
		want   int64
	}{
		{"translate 3000 words", "translate", 3000, 15},
		{"summarize 3000 words", "summarize", 3000, 6},
		{"translate rounds up", "translate", 1, 1},
		{"summarize 1001 words", "summarize", 1001, 3},
		{"no words", "translate", 0, 0},
		{"per call plus words", "ocr", 1500, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := chargeAt(t, e, t0, Request{Subject: "alice", Action: tt.action, Units: tt.units})
			if !d.Allowed || d.Cost != tt.want {
				t.Fatalf("allowed=%v cost %d, want cost %d", d.Allowed, d.Cost, tt.want)
			}
		})
	}
}

func TestGrantRefillsEachPeriod(t *testing.T) {
	cfg := oneTier()
	cfg.Tiers["standard"] = TierConfig{Tokens: TokenGrant{Amount: 10, Period: day}}
	cfg.Actions = map[string]ActionConfig{"op": {PerCall: 4}}
	e := newEngine(t, cfg)
	req := Request{Subject: "alice", Action: "op"}
	admitN(t, e, t0, req, 2)
	d := chargeAt(t, e, t0, req)
	if d.Allowed || d.Reason != ReasonInsufficientBalance || d.Balance != 2 {
		t.Fatalf("third: allowed=%v reason %v balance %d, want refused with 2 left", d.Allowed, d.Reason, d.Balance)
	}
	if want := 14 * time.Hour; d.RetryAfter != want {
		t.Errorf("RetryAfter %s, want %s (the next grant period)", d.RetryAfter, want)
	}
	next := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	if d := chargeAt(t, e, next, req); !d.Allowed || d.Balance != 6 {
		t.Fatalf("next day: allowed=%v balance %d, want 6 (unused tokens do not carry over)", d.Allowed, d.Balance)
	}
}

func TestAddCredits(t *testing.T) {
	cfg := oneTier()
	cfg.Actions = map[string]ActionConfig{"op": {PerCall: 15}}
	cfg.Teams = map[string]TeamConfig{"eng": {Members: []string{"bob"}, Credits: 10}}
	e := newEngine(t, cfg)
	ctx := context.Background()
	if d := chargeAt(t, e, t0, Request{Subject: "alice", Action: "op"}); d.Allowed {
		t.Fatal("charge with no balance allowed")
	}
	if b, err := e.AddCredits(ctx, "alice", 100); err != nil || b != 100 {
		t.Fatalf("AddCredits(+100) = %d, %v; want 100", b, err)
	}
	if d := chargeAt(t, e, t0, Request{Subject: "alice", Action: "op"}); !d.Allowed || d.Balance != 85 {
		t.Fatalf("charge: allowed=%v balance %d, want 85", d.Allowed, d.Balance)
	}
	b, err := e.AddCredits(ctx, "alice", -200)
	if !errors.Is(err, ErrNegativeBalance) || b != 85 {
		t.Fatalf("AddCredits(-200) = %d, %v; want 85 and ErrNegativeBalance", b, err)
	}
	if b, err := e.AddCredits(ctx, "alice", -85); err != nil || b != 0 {
		t.Fatalf("AddCredits(-85) = %d, %v; want 0", b, err)
	}
	if b, err := e.AddCredits(ctx, "team:eng", 5); err != nil || b != 15 {
		t.Fatalf("AddCredits(team:eng, +5) = %d, %v; want 15 (10 starting credits + 5)", b, err)
	}
	if d := chargeAt(t, e, t0, Request{Subject: "bob", Action: "op"}); !d.Allowed || d.BalanceOwner != "team:eng" || d.Balance != 0 {
		t.Fatalf("bob: allowed=%v owner %q balance %d, want the team to pay down to 0", d.Allowed, d.BalanceOwner, d.Balance)
	}
}

func TestTeamSharedBalanceAndLimits(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 100})
	cfg.Actions = map[string]ActionConfig{"translate": {PerThousand: 5}}
	cfg.Teams = map[string]TeamConfig{"eng": {
		Members: []string{"ann", "ben"},
		Tokens:  TokenGrant{Amount: 100, Period: month},
		Limits:  []LimitConfig{{Period: hour, Max: 3}},
	}}
	e := newEngine(t, cfg)
	req := func(s string) Request { return Request{Subject: s, Action: "translate", Units: 10_000} }
	for _, s := range []string{"ann", "ben"} {
		d := chargeAt(t, e, t0, req(s))
		if !d.Allowed || d.Charged != 50 || d.BalanceOwner != "team:eng" || d.Team != "eng" {
			t.Fatalf("%s: allowed=%v charged %d owner %q team %q", s, d.Allowed, d.Charged, d.BalanceOwner, d.Team)
		}
	}
	d := chargeAt(t, e, t0, req("ann"))
	if d.Allowed || d.Reason != ReasonInsufficientBalance {
		t.Fatalf("third: allowed=%v reason %v, want insufficient_balance from the shared balance", d.Allowed, d.Reason)
	}
	ts := status(t, e, t0, "team:eng")
	if ts.Balance != 0 || limitUsed(t, ts, "team:hour") != 2 {
		t.Fatalf("team status: balance %d, limits %+v; want 0 and 2 used", ts.Balance, ts.Limits)
	}
	// The team-wide hourly limit of 3 counts both members together.
	if _, err := e.AddCredits(context.Background(), "team:eng", 1000); err != nil {
		t.Fatal(err)
	}
	if d := chargeAt(t, e, t0, req("ben")); !d.Allowed {
		t.Fatalf("ben: refused with %v", d.Reason)
	}
	d = chargeAt(t, e, t0, req("ann"))
	if d.Allowed || d.Binding.Name != "team:hour" {
		t.Fatalf("fourth team request: allowed=%v binding %q, want the team limit to refuse", d.Allowed, d.Binding.Name)
	}
}

func TestBalanceEvents(t *testing.T) {
	rec := &recorder{}
	cfg := oneTier()
	cfg.Tiers["standard"] = TierConfig{Tokens: TokenGrant{Amount: 100, Period: day}}
	cfg.Actions = map[string]ActionConfig{"op": {PerCall: 30}}
	cfg.Events = rec
	e := newEngine(t, cfg)
	req := Request{Subject: "alice", Action: "op"}
	admitN(t, e, t0, req, 3) // 10 left: below 10% of 100 only at 90 spent
	if n := rec.count(EventBalanceLow); n != 1 {
		t.Fatalf("%d balance-low events, want 1", n)
	}
	for range 3 {
		chargeAt(t, e, t0, req)
	}
	if n := rec.count(EventInsufficientBalance); n != 1 {
		t.Fatalf("%d insufficient-balance events, want 1", n)
	}
}

func TestAddCreditsToTeamWithoutBalance(t *testing.T) {
	cfg := oneTier()
	cfg.Teams = map[string]TeamConfig{"eng": {Limits: []LimitConfig{{Period: hour, Max: 5}}}}
	e := newEngine(t, cfg)
	for _, key := range []string{"team:eng", "team:nope"} {
		if _, err := e.AddCredits(context.Background(), key, 10); err == nil || !strings.Contains(err.Error(), "no shared balance") {
			t.Errorf("AddCredits(%q) = %v, want a no-shared-balance error", key, err)
		}
	}
}

// TestGrantPeriods steps a clock second by second through the grant's
// boundaries: a grant of 10 with a cost of 3 admits 3 calls, refuses the
// 4th, and refills exactly at the calendar boundary.
func TestGrantPeriods(t *testing.T) {
	tests := []struct {
		name   string
		period Period
		start  time.Time
		refill time.Time
	}{
		{"hour", hour, t0.Add(59*time.Minute + 50*time.Second), t0.Add(time.Hour)},
		{"day", day, time.Date(2026, 3, 2, 23, 59, 50, 0, time.UTC), time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)},
		{"month leap year", month, time.Date(2024, 2, 29, 23, 59, 50, 0, time.UTC), time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"month Jan 31", month, time.Date(2025, 1, 31, 23, 59, 50, 0, time.UTC), time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := oneTier()
			cfg.Tiers["standard"] = TierConfig{Tokens: TokenGrant{Amount: 10, Period: tt.period}}
			cfg.Actions = map[string]ActionConfig{"op": {PerCall: 3}}
			e := newEngine(t, cfg)
			req := Request{Subject: "alice", Action: "op"}
			for n := range 4 {
				now := tt.start.Add(time.Duration(n) * time.Second)
				d := chargeAt(t, e, now, req)
				if want := n < 3; d.Allowed != want || d.Balance != int64(10-3*min(n+1, 3)) {
					t.Fatalf("call %d: allowed=%v balance %d", n+1, d.Allowed, d.Balance)
				}
				if n == 3 && !now.Add(d.RetryAfter).Equal(tt.refill) {
					t.Fatalf("RetryAfter points to %s, want the refill at %s", now.Add(d.RetryAfter), tt.refill)
				}
			}
			if d := chargeAt(t, e, tt.refill.Add(-time.Nanosecond), req); d.Allowed {
				t.Fatal("admitted before the refill")
			}
			if d := chargeAt(t, e, tt.refill, req); !d.Allowed || d.Balance != 7 {
				t.Fatalf("at the refill: allowed=%v balance %d, want 7", d.Allowed, d.Balance)
			}
		})
	}
}
