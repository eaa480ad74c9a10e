package main

import (
	"os"
	"testing"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
)

// TestBenchConfig checks that testdata/bench.yaml loads and agrees with
// loadgen's default workload: exactly the first --free-users users are
// freemium with a limit small enough for the warm-up to use up, and no
// other user can reach a limit or run out of tokens within a run.
func TestBenchConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/bench.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse(data)
	if err != nil {
		t.Fatalf("bench.yaml does not load: %v", err)
	}
	cfg, err := f.Engine()
	if err != nil {
		t.Fatalf("bench.yaml does not convert: %v", err)
	}
	if _, err := engine.New(cfg, engine.Options{}); err != nil {
		t.Fatalf("engine.New refuses bench.yaml: %v", err)
	}
	const users, freeUsers = 10000, 20 // loadgen's defaults
	if cfg.DefaultTier != "standard" {
		t.Errorf("default tier = %q, want standard", cfg.DefaultTier)
	}
	tierOf := func(i int) engine.Tier {
		if u, ok := cfg.Users[userID(i)]; ok {
			return u.Tier
		}
		return cfg.DefaultTier
	}
	for i := range users {
		tier := tierOf(i)
		if (i < freeUsers) != (tier == "freemium") {
			t.Fatalf("%s is %s; want the first %d users, and only them, freemium", userID(i), tier, freeUsers)
		}
	}
	for name, tier := range cfg.Tiers {
		// The busiest non-freemium user sees ~5 Checks/s at 50 000/s.
		const perSecond, runSeconds = 5, 30
		for _, l := range tier.Limits {
			budget := int64(perSecond * min(l.Period.Every.Seconds(), runSeconds))
			switch {
			case name == "freemium" && l.Max > 20:
				t.Errorf("freemium limit %s = %d: too high for the warm-up to use it up", l.Name, l.Max)
			case name != "freemium" && l.Max < 2*budget:
				t.Errorf("%s limit %s = %d: a user may reach it (≈%d calls in a run)", name, l.Name, l.Max, budget)
			}
		}
		if name != "freemium" && !tier.Tokens.Unlimited && tier.Tokens.Amount < 20*perSecond*runSeconds {
			t.Errorf("%s token grant %d may run out within a run", name, tier.Tokens.Amount)
		}
	}
}
