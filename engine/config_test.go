package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := func() testConfig { return oneTier(LimitConfig{Period: hour, Max: 10}) }
	neg := PriorityCritical + 1
	badMode := WindowMode(7)
	tests := []struct {
		name   string
		mutate func(c *testConfig)
		want   string // substring of the error; empty means valid
	}{
		{"valid", func(c *testConfig) {}, ""},
		{"no tiers", func(c *testConfig) { c.Tiers = nil }, "tiers: at least one tier is required"},
		{"negative max", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{Limits: []LimitConfig{{Period: hour, Max: -5}}}
		}, "tiers.standard.limits[0].max: must be >= 0, got -5"},
		{"no period", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{Limits: []LimitConfig{{Max: 5}}}
		}, "tiers.standard.limits[0].period: must be minute, hour, day, week, month or a positive duration"},
		{"bad calendar", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{Limits: []LimitConfig{{Period: Period{Calendar: "fortnight"}, Max: 5}}}
		}, `unknown calendar period "fortnight"`},
		{"duplicate names", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{Limits: []LimitConfig{{Period: hour, Max: 5}, {Period: hour, Max: 6}}}
		}, `tiers.standard.limits[1].name: duplicate limit name "hour"`},
		{"unknown default tier", func(c *testConfig) { c.DefaultTier = "gold" }, `default_tier: unknown tier "gold"`},
		{"user with unknown tier", func(c *testConfig) {
			c.Users = map[string]UserConfig{"alice": {Tier: "gold"}}
		}, `users.alice.tier: unknown tier "gold"`},
		{"reserved user id", func(c *testConfig) {
			c.Users = map[string]UserConfig{"team:x": {}}
		}, `invalid user id "team:x"`},
		{"negative price", func(c *testConfig) {
			c.Actions = map[string]ActionConfig{"translate": {PerThousand: -1}}
		}, "actions.translate.per_thousand: must be >= 0, got -1"},
		{"threshold over 100", func(c *testConfig) { c.Alerts.ThresholdPercent = 120 }, "alerts.threshold_percentage: must be between 0 and 100, got 120"},
		{"bad priority", func(c *testConfig) { c.Tiers["standard"] = TierConfig{Priority: neg} }, "tiers.standard.priority"},
		{"bad mode", func(c *testConfig) {
			c.Roles = map[string]RoleConfig{"r": {Limits: []LimitConfig{{Period: hour, Max: 1, Mode: &badMode}}}}
		}, "roles.r.limits[0].mode: must be fixed or sliding, got 7"},
		{"member of two teams", func(c *testConfig) {
			c.Teams = map[string]TeamConfig{"a": {Members: []string{"x"}}, "b": {Members: []string{"x"}}}
		}, `teams.b.members[0]: "x" is already a member of team "a"`},
		{"negative grant", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{Tokens: TokenGrant{Amount: -1, Period: day}}
		}, "tiers.standard.tokens.amount: must be >= 0, got -1"},
		{"negative capacity", func(c *testConfig) { c.Capacity.RequestsPerSecond = -1 }, "capacity.requests_per_second: must be >= 0, got -1"},
		{"negative max delay", func(c *testConfig) {
			c.Tiers["standard"] = TierConfig{MaxDelay: -time.Second}
		}, "tiers.standard.max_delay: must be >= 0, got -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
			if _, err := New(c.Rules, c.Options); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{
		"gold":   {Priority: PriorityHigh},
		"bronze": {Priority: PriorityLow},
	},
	}}.withDefaults()
	if c.DefaultTier != "bronze" || c.Alerts.ThresholdPercent != 90 || c.Capacity.Factor != 1 ||
		c.Location != time.UTC || c.CacheSize != 100_000 || c.FlushInterval != 100*time.Millisecond {
		t.Fatalf("defaults %+v", c)
	}
	if c.Shards < 16 || c.Shards&(c.Shards-1) != 0 {
		t.Fatalf("shards %d: want a power of two >= 16", c.Shards)
	}
	if got := (testConfig{Options: Options{Shards: 20}}).withDefaults().Shards; got != 32 {
		t.Fatalf("Shards 20 rounds to %d, want 32", got)
	}
	c = testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"freemium": {Priority: PriorityHigh}, "a": {}}}}.withDefaults()
	if c.DefaultTier != "freemium" {
		t.Fatalf("default tier %q, want freemium", c.DefaultTier)
	}
}

func TestLimitNames(t *testing.T) {
	tests := []struct {
		l    LimitConfig
		want string
	}{
		{LimitConfig{Period: hour}, "hour"},
		{LimitConfig{Period: day, Actions: []string{"translate"}}, "translate:day"},
		{LimitConfig{Period: month, Unit: UnitTokens}, "tokens:month"},
		{LimitConfig{Period: Period{Every: 15 * time.Minute}, Actions: []string{"a", "b"}}, "a+b:15m0s"},
		{LimitConfig{Name: "burst", Period: minute}, "burst"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := limitName(tt.l); got != tt.want {
				t.Fatalf("limitName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusChargesNothing(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 2}, LimitConfig{Period: day, Max: 5, Actions: []string{"translate"}})
	cfg.Users = map[string]UserConfig{"alice": {Credits: 7}}
	e := newEngine(t, cfg)
	for range 5 {
		s := status(t, e, t0, "alice")
		if limitUsed(t, s, "hour") != 0 || limitUsed(t, s, "translate:day") != 0 || s.Balance != 7 || s.Tier != "standard" {
			t.Fatalf("status %+v", s)
		}
	}
	admitN(t, e, t0, Request{Subject: "alice"}, 2)
	if s := status(t, e, t0, "alice"); limitUsed(t, s, "hour") != 2 {
		t.Fatalf("status after 2 charges: %+v", s.Limits)
	}
}
