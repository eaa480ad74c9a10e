package engine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// hammer runs 64 goroutines that each charge req tries times at t0, and
// returns how many were admitted.
func hammer(t *testing.T, e *Engine, req Request, tries int) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range tries {
				d, err := e.ChargeAt(context.Background(), t0, req)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return admitted.Load()
}

func TestConcurrentWindowLimit(t *testing.T) {
	const limit = 500
	for round := range 20 {
		e := newEngine(t, oneTier(LimitConfig{Period: hour, Max: limit}))
		if got := hammer(t, e, Request{Subject: "alice"}, 12); got != limit {
			t.Fatalf("round %d: %d admitted, want exactly %d", round, got, limit)
		}
		if got := limitUsed(t, status(t, e, t0, "alice"), "hour"); got != limit {
			t.Fatalf("round %d: usage %d, want %d", round, got, limit)
		}
	}
}

func TestConcurrentBalance(t *testing.T) {
	const balance, cost = 1000, 7
	tests := []struct {
		name     string
		subjects []string
		owner    string
	}{
		{"own credits", []string{"a"}, "a"},
		// Members of one team share the balance from two different states.
		{"team balance", []string{"a", "b"}, "team:eng"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 20 {
				cfg := oneTier()
				cfg.Actions = map[string]ActionConfig{"op": {PerCall: cost}}
				if tt.owner == "a" {
					cfg.Users = map[string]UserConfig{"a": {Credits: balance}}
				} else {
					cfg.Teams = map[string]TeamConfig{"eng": {Members: tt.subjects, Credits: balance}}
				}
				e := newEngine(t, cfg)
				var admitted atomic.Int64
				var wg sync.WaitGroup
				for _, s := range tt.subjects {
					wg.Go(func() { admitted.Add(hammer(t, e, Request{Subject: s, Action: "op"}, 4/len(tt.subjects))) })
				}
				wg.Wait()
				if got := admitted.Load(); got != balance/cost {
					t.Fatalf("round %d: %d admitted, want floor(%d/%d) = %d", round, got, balance, cost, balance/cost)
				}
				if s := status(t, e, t0, tt.owner); s.Balance != balance%cost {
					t.Fatalf("round %d: balance %d, want %d mod %d = %d", round, s.Balance, balance, cost, balance%cost)
				}
			}
		})
	}
}

// TestConcurrentMixed charges many subjects, with teams, from many
// goroutines while flushing, to give the race detector the lock paths.
func TestConcurrentMixed(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 5})
	cfg.CacheSize = 40
	cfg.Shards = 4
	cfg.Teams = map[string]TeamConfig{"eng": {Limits: []LimitConfig{{Period: hour, Max: 1000}}}}
	e := newEngine(t, cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				s := "u" + strconv.Itoa((g*7+i)%50)
				if _, err := e.ChargeAt(context.Background(), t0, Request{Subject: s, Team: "eng"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := e.Flush(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	var total int64
	for i := range 50 {
		used := limitUsed(t, status(t, e, t0, "u"+strconv.Itoa(i)), "hour")
		if used > 5 {
			t.Fatalf("u%d used %d of 5", i, used)
		}
		total += used
	}
	if team := limitUsed(t, status(t, e, t0, "team:eng"), "team:hour"); team != total {
		t.Fatalf("team usage %d, members' usage %d: the two-state charge is not atomic", team, total)
	}
}

// TestReloadDuringCharges swaps two rulesets while charges run, here and
// through an Authority (whose round trip releases the locks mid-charge):
// every decision must come whole from one of them. Ruleset a has a limit
// of 1000 and warns from 1% of it; b has 2000 and warns only at 100%, so
// a decision's tier, limit and warning must all belong together.
func TestReloadDuringCharges(t *testing.T) {
	rules := func(tier Tier, max int64, threshold int) Rules {
		return Rules{Tiers: map[Tier]TierConfig{tier: {Limits: []LimitConfig{{Name: "hour", Period: hour, Max: max}}}},
			Alerts: AlertConfig{ThresholdPercent: threshold}}
	}
	a, b := rules("a", 1000, 1), rules("b", 2000, 100)
	consistent := func(d Decision) bool {
		switch d.Tier {
		case "a":
			return d.Binding.Limit == 1000 && (d.Warning != "") == (d.Binding.Used >= 10)
		case "b":
			return d.Binding.Limit == 2000 && d.Warning == ""
		}
		return false
	}
	for _, remote := range []bool{false, true} {
		t.Run("remote="+strconv.FormatBool(remote), func(t *testing.T) {
			cfg := testConfig{Rules: a}
			if remote {
				cfg.Authority = newFakeAuthority()
			}
			e := newEngine(t, cfg)
			var reloads sync.WaitGroup
			stop := make(chan struct{})
			reloads.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					next := a
					if i%2 == 0 {
						next = b
					}
					if err := e.Reload(next); err != nil {
						t.Error(err)
						return
					}
				}
			})
			var charges sync.WaitGroup
			for g := range 8 {
				charges.Go(func() {
					req := Request{Subject: "s" + strconv.Itoa(g)}
					for range 200 {
						d, err := e.ChargeAt(context.Background(), t0, req)
						if err != nil {
							t.Error(err)
							return
						}
						if !d.Allowed || !consistent(d) {
							t.Errorf("decision mixes rulesets: tier %q, allowed %v, limit %d, used %d, warning %q",
								d.Tier, d.Allowed, d.Binding.Limit, d.Binding.Used, d.Warning)
							return
						}
					}
				})
			}
			charges.Wait()
			close(stop)
			reloads.Wait()
		})
	}
}
