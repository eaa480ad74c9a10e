package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

const richYAML = `
quota_manager:
  tiers:
    freemium:
      api_calls_per_minute: 2
      api_calls_per_hour: 10
      api_calls_per_day: 50
      api_calls_per_month: 900
      priority: low
      limits:
        - {name: translate-words, max: 20000, per: day, unit: units, window: sliding, actions: [translate]}
        - {max: 7, per: 15m}
      tokens: {grant: 1000, every: month}
      features: [translate]
      max_delay: 2s
      failure_mode: open
      upgrade_url: https://example.com/upgrade
    enterprise:
      priority: critical
      tokens: {unlimited: true}
      features: []
  default_tier: freemium
  unknown_subjects: deny
  window: sliding
  timezone: Europe/Paris
  actions:
    translate: {tokens_per_1000_units: 5, unit: words, tokens_per_call: 1}
  users:
    alice: {tier: enterprise, team: acme, roles: [analyst], credits: 500, limits: [{name: hour, max: 3, per: hour}]}
  roles:
    analyst: {limits: [{max: 4, per: day, unit: tokens}], features: [nightly]}
  workflows:
    nightly: {limits: [{max: 1, per: day}], priority: critical}
    adhoc: {}
  teams:
    acme: {members: [alice, bob], tokens: {grant: 5000, every: week}, credits: 7, limits: [{max: 100, per: hour}]}
  capacity: {requests_per_second: 250, factor: 0.5, shed_at: {low: 0.7, high: 0.95}}
  alerts: {enabled: true, threshold_percentage: 80, channels: [webhook]}
  messages: {exceeded: "No more.", warning: "Near your %s limit.", insufficient_balance: "Broke.", feature_not_in_plan: "%s needs %s.", shed: "Busy.", no_identity: "Who?", unknown_subject: "Stranger."}
  cache: {subjects: 5000, shards: 8}
`

func period(t *testing.T, s string) engine.Period {
	t.Helper()
	p, err := engine.ParsePeriod(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEngineConversion(t *testing.T) {
	f, err := Parse([]byte(richYAML))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Engine()
	if err != nil {
		t.Fatal(err)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	sliding, critical := engine.WindowSliding, engine.PriorityCritical
	want := engine.Config{
		Tiers: map[engine.Tier]engine.TierConfig{
			"freemium": {
				Priority: engine.PriorityLow,
				Limits: []engine.LimitConfig{
					{Name: "minute", Period: period(t, "minute"), Max: 2},
					{Name: "hour", Period: period(t, "hour"), Max: 10},
					{Name: "day", Period: period(t, "day"), Max: 50},
					{Name: "month", Period: period(t, "month"), Max: 900},
					{Name: "translate-words", Period: period(t, "day"), Max: 20000, Unit: engine.UnitUnits, Mode: &sliding, Actions: []string{"translate"}},
					{Period: period(t, "15m"), Max: 7},
				},
				Tokens:      engine.TokenGrant{Amount: 1000, Period: period(t, "month")},
				Features:    []string{"translate"},
				MaxDelay:    2 * time.Second,
				FailureMode: engine.FailOpen,
				UpgradeURL:  "https://example.com/upgrade",
			},
			"enterprise": {Priority: engine.PriorityCritical, Tokens: engine.TokenGrant{Unlimited: true}, Features: []string{}},
		},
		DefaultTier: "freemium",
		DenyUnknown: true,
		Actions:     map[string]engine.ActionConfig{"translate": {PerCall: 1, PerThousand: 5, Unit: "words"}},
		Users: map[string]engine.UserConfig{"alice": {
			Tier: "enterprise", Team: "acme", Roles: []string{"analyst"}, Credits: 500,
			Limits: []engine.LimitConfig{{Name: "hour", Period: period(t, "hour"), Max: 3}},
		}},
		Roles: map[string]engine.RoleConfig{"analyst": {
			Limits:   []engine.LimitConfig{{Period: period(t, "day"), Max: 4, Unit: engine.UnitTokens}},
			Features: []string{"nightly"},
		}},
		Workflows: map[string]engine.WorkflowConfig{
			"nightly": {Limits: []engine.LimitConfig{{Period: period(t, "day"), Max: 1}}, Priority: &critical},
			"adhoc":   {},
		},
		Teams: map[string]engine.TeamConfig{"acme": {
			Members: []string{"alice", "bob"}, Credits: 7,
			Tokens: engine.TokenGrant{Amount: 5000, Period: period(t, "week")},
			Limits: []engine.LimitConfig{{Period: period(t, "hour"), Max: 100}},
		}},
		Alerts: engine.AlertConfig{ThresholdPercent: 80},
		Messages: engine.Messages{
			Exceeded: "No more.", Warning: "Near your %s limit.", InsufficientBalance: "Broke.",
			FeatureNotInPlan: "%s needs %s.", Shed: "Busy.", NoIdentity: "Who?", UnknownSubject: "Stranger.",
		},
		Capacity: engine.CapacityConfig{
			RequestsPerSecond: 250, Factor: 0.5,
			ShedAt: map[engine.Priority]float64{engine.PriorityLow: 0.7, engine.PriorityHigh: 0.95},
		},
		Location:  paris,
		Window:    engine.WindowSliding,
		Shards:    8,
		CacheSize: 5000, PendingSize: 100_000, PendingMaxAge: 15 * time.Minute,
	}
	if got.Location.String() != want.Location.String() {
		t.Errorf("Location = %v, want %v", got.Location, want.Location)
	}
	got.Location, want.Location = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Engine() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestEngineConversionIsolated(t *testing.T) {
	// The engine.Config must not alias the File, which reloads treat as
	// immutable.
	f, err := Parse([]byte(richYAML))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Engine()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tiers["freemium"].Features[0] = "changed"
	cfg.Users["alice"].Roles[0] = "changed"
	if f.QuotaManager.Tiers["freemium"].Features[0] != "translate" || f.QuotaManager.Users["alice"].Roles[0] != "analyst" {
		t.Error("changing the engine.Config changed the File")
	}
}

func TestEngineAcceptsConversion(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{name: "seed", data: seedJSON},
		{name: "default", data: Default()},
		{name: "rich", data: []byte(richYAML)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := f.Engine()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := engine.New(cfg); err != nil {
				t.Errorf("engine.New(converted %s config) = %v", tt.name, err)
			}
		})
	}
}
