package redis

import (
	"context"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// TestProfileSharedAcrossReplicas changes a subject's tier on replica A
// and watches replica B pick it up once its cached profile is older than
// the TTL, on an injected clock.
func TestProfileSharedAcrossReplicas(t *testing.T) {
	const ttl = 5 * time.Second
	srv := startServer(t)
	start := time.Now().Truncate(time.Hour).Add(time.Minute)
	now := start
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"free": {Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 1}}},
			"pro":  {Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 100}}},
		},
		DefaultTier: "free",
	}, Options: engine.Options{
		Now: func() time.Time { return now },
	}}
	engines, stores := replicas(t, srv, Options{Prefix: "prof", ProfileTTL: ttl, Timeout: time.Second}, cfg, 2)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	steps := []struct {
		name    string
		at      time.Duration // after the start
		set     *engine.Profile
		allowed bool
		tier    engine.Tier
	}{
		{name: "free: first call", allowed: true, tier: "free"},
		{name: "free: over its limit", at: time.Second, allowed: false, tier: "free"},
		{name: "A upgrades to pro; B's copy is fresh", at: 2 * time.Second, set: &engine.Profile{Tier: "pro"}, allowed: false, tier: "free"},
		{name: "B re-reads after the TTL", at: ttl, allowed: true, tier: "pro"},
		{name: "A removes the override", at: ttl + time.Second, set: &engine.Profile{}, allowed: true, tier: "pro"},
		{name: "B is free again after the TTL", at: 2*ttl + time.Second, allowed: false, tier: "free"},
	}
	for _, s := range steps {
		now = start.Add(s.at)
		if s.set != nil {
			if err := a.SetProfile(ctx, "pat", *s.set); err != nil {
				t.Fatalf("%s: SetProfile: %v", s.name, err)
			}
		}
		d, err := b.Charge(ctx, engine.Request{Subject: "pat"})
		if err != nil || d.Allowed != s.allowed || d.Tier != s.tier {
			t.Fatalf("%s: B decided allowed %v tier %q, %v; want allowed %v tier %q", s.name, d.Allowed, d.Tier, err, s.allowed, s.tier)
		}
	}
	// Reads: none at first use (the state's load brings the profile),
	// then one after each change; polls: the first request, then at 5s
	// and 11s (once per TTL, only when asked).
	if got := stores[1].Stats().Profiles; got != 2+3 {
		t.Fatalf("B made %d profile reads and polls, want 2 reads and 3 polls", got)
	}
}

func TestLoadCarriesSharedProfile(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{Prefix: "lcp"})
	ctx := context.Background()
	pro := engine.Profile{Tier: "pro", Roles: []string{"beta"}}
	tests := []struct {
		name     string
		snapshot *engine.Profile // saved in a snapshot first, if set
		shared   *engine.Profile // then shared, if set
		ok       bool
		want     engine.Tier
	}{
		{name: "nothing saved", ok: false},
		{name: "only a shared profile", shared: &pro, ok: true, want: "pro"},
		{name: "an older snapshot loses to the shared profile", snapshot: &engine.Profile{Tier: "free"}, shared: &pro, ok: true, want: "pro"},
		{name: "a snapshot alone keeps its profile", snapshot: &engine.Profile{Tier: "free"}, ok: true, want: "free"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + tc.name
			if tc.snapshot != nil {
				if err := st.Save(ctx, []engine.Snapshot{{Key: key, Version: 3, Profile: *tc.snapshot}}); err != nil {
					t.Fatalf("Save: %v", err)
				}
			}
			if tc.shared != nil {
				if err := st.SaveProfile(ctx, key, *tc.shared); err != nil {
					t.Fatalf("SaveProfile: %v", err)
				}
			}
			snap, ok, err := st.Load(ctx, key)
			if err != nil || ok != tc.ok || snap.Profile.Tier != tc.want {
				t.Fatalf("Load = ok %v tier %q, %v; want ok %v tier %q", ok, snap.Profile.Tier, err, tc.ok, tc.want)
			}
			if tc.shared != nil && tc.snapshot == nil && snap.Version != 0 {
				t.Fatalf("Load of a profile alone = version %d, want 0 (no state saved)", snap.Version)
			}
		})
	}
}

// TestDenyUnknownSharedProfile: with DenyUnknown, a subject that no
// configuration knows is refused until a profile is set for it on one
// replica, and then admitted on another that never saw it, whether or not
// that one refused it before.
func TestDenyUnknownSharedProfile(t *testing.T) {
	srv := startServer(t)
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"free": {Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 10}}},
		},
		DenyUnknown: true,
	}, Options: engine.Options{
		Now: fixedNow(),
	}}
	engines, _ := replicas(t, srv, Options{Prefix: "deny", Timeout: time.Second}, cfg, 2)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	for _, subject := range []string{"refused-before", "never-seen"} {
		if subject == "refused-before" {
			d, err := b.Charge(ctx, engine.Request{Subject: subject})
			if err != nil || d.Allowed || d.Reason != engine.ReasonUnknownSubject {
				t.Fatalf("%s before its profile: %v, %v; want unknown subject", subject, d.Reason, err)
			}
		}
		if err := a.SetProfile(ctx, subject, engine.Profile{Tier: "free"}); err != nil {
			t.Fatalf("SetProfile: %v", err)
		}
		d, err := b.Charge(ctx, engine.Request{Subject: subject})
		if err != nil || !d.Allowed || d.Tier != "free" {
			t.Fatalf("%s on the other replica: allowed %v (%v) tier %q, %v; want allowed on tier free", subject, d.Allowed, d.Reason, d.Tier, err)
		}
	}
}

// TestProfilePollDue: a poll is due once per TTL. Concurrent Checks take
// their times a little apart, so one that started just before the last
// poll must not poll again (that once made a poll of nearly every Check);
// a clock set back by more than the TTL must.
func TestProfilePollDue(t *testing.T) {
	const ttl = 5 * time.Second
	st := New(nil, Options{ProfileTTL: ttl})
	t0 := time.Now().UnixNano()
	steps := []struct {
		name string
		at   time.Duration // from t0
		due  bool
	}{
		{name: "first call", at: 0, due: true},
		{name: "a Check that started 2ms earlier", at: -2 * time.Millisecond, due: false},
		{name: "a Check that started 1s earlier", at: -time.Second, due: false},
		{name: "within the TTL", at: ttl - time.Millisecond, due: false},
		{name: "a TTL later", at: ttl, due: true},
		{name: "again at once", at: ttl, due: false},
		{name: "clock set back by more than the TTL", at: -ttl - time.Second, due: true},
	}
	for _, s := range steps {
		if _, due := st.ProfilesChanged(t0 + int64(s.at)); due != s.due {
			t.Errorf("%s: due %v, want %v", s.name, due, s.due)
		}
	}
}
