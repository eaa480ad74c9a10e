package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

// rulesConfig has two tiers (freemium with 4 limits, enterprise fail-open
// with 1), two roles, a team with limits and a workflow.
func rulesConfig() testConfig {
	lim := func(name string, max int64) LimitConfig { return LimitConfig{Name: name, Period: hour, Max: max} }
	return testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{
			"freemium": {Priority: PriorityLow, Limits: []LimitConfig{lim("hour", 10), lim("a", 10), lim("b", 10), lim("c", 10)},
				Tokens: TokenGrant{Amount: 50, Period: month}},
			"enterprise": {Priority: PriorityHigh, Limits: []LimitConfig{lim("hour", 500)}, FailureMode: FailOpen,
				Tokens: TokenGrant{Amount: 5000, Period: month}},
		},
		Roles: map[string]RoleConfig{
			"analyst": {Limits: []LimitConfig{lim("r1", 10), lim("r2", 10)}},
			"auditor": {},
		},
		Teams:     map[string]TeamConfig{"blue": {Members: []string{"alice"}, Limits: []LimitConfig{lim("t1", 100)}}},
		Workflows: map[string]WorkflowConfig{"nightly": {Limits: []LimitConfig{lim("w1", 5)}}},
		Actions:   map[string]ActionConfig{"translate": {PerCall: 1}},
	}}
}

// nLimits returns n distinct hourly limits named p0, p1, ...
func nLimits(n int) []LimitConfig {
	out := make([]LimitConfig, n)
	for i := range out {
		out[i] = LimitConfig{Name: fmt.Sprintf("p%d", i), Period: hour, Max: 100}
	}
	return out
}

func TestValidateProfile(t *testing.T) {
	e := newEngine(t, rulesConfig())
	tests := []struct {
		name    string
		subject string
		p       Profile
		want    []string // substrings of the error; none: valid
	}{
		{name: "zero profile", subject: "bob"},
		{name: "known tier, team and roles", subject: "bob", p: Profile{Tier: "enterprise", Team: "blue", Roles: []string{"analyst", "auditor"}}},
		{name: "unknown tier", subject: "bob", p: Profile{Tier: "gold"}, want: []string{"profile.tier", `"gold"`}},
		{name: "unknown team", subject: "bob", p: Profile{Team: "no-such-team"}, want: []string{"profile.team", "no-such-team"}},
		{name: "unknown role", subject: "bob", p: Profile{Roles: []string{"analyst", "root"}}, want: []string{"profile.roles[1]", `"root"`}},
		{name: "role twice", subject: "bob", p: Profile{Roles: []string{"auditor", "auditor"}}, want: []string{"profile.roles[1]", "twice"}},
		{name: "nanosecond period", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: Period{Every: time.Nanosecond}, Max: 1}}},
			want: []string{"profile.limits[0].period", "at least 1s"}},
		{name: "fractional seconds", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: Period{Every: 1500 * time.Millisecond}, Max: 1}}},
			want: []string{"profile.limits[0].period", "whole number of seconds"}},
		{name: "period too long", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: Period{Every: MaxPeriod + time.Hour}, Max: 1}}},
			want: []string{"profile.limits[0].period", "at most"}},
		{name: "negative max", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: hour, Max: -1}}}, want: []string{"profile.limits[0].max"}},
		{name: "duplicate limit names", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: hour, Max: 1}, {Period: hour, Max: 2}}},
			want: []string{"profile.limits[1].name", "duplicate"}},
		{name: "long limit name", subject: "bob", p: Profile{Limits: []LimitConfig{{Name: strings.Repeat("n", MaxLimitNameBytes+1), Period: hour, Max: 1}}},
			want: []string{"profile.limits[0].name", "bytes long"}},
		{name: "too many actions", subject: "bob", p: Profile{Limits: []LimitConfig{{Period: hour, Max: 1, Actions: make([]string, MaxLimitActions+1)}}},
			want: []string{"profile.limits[0].actions", "at most 64"}},
		{name: "more limits than a request may meet", subject: "bob", p: Profile{Limits: nLimits(MaxLimitsPerRequest + 1)},
			want: []string{"profile.limits", "at most 16"}},
		// freemium 4 + profile 10 + analyst 2 + workflow 1 = 17.
		{name: "too many with the tier, roles and workflow", subject: "bob", p: Profile{Tier: "freemium", Roles: []string{"analyst"}, Limits: nLimits(10)},
			want: []string{"profile: up to 17 limits"}},
		// A profile limit named like a tier limit replaces it: 4 + 9 + 2 + 1 = 16.
		{name: "overrides share a counter", subject: "bob", p: Profile{Tier: "freemium", Roles: []string{"analyst"},
			Limits: append(nLimits(9), LimitConfig{Name: "hour", Period: hour, Max: 3})}},
		// alice is in blue: its limit counts too (4 + 10 + 1 + 1 = 16, then 17).
		{name: "team limits count", subject: "alice", p: Profile{Tier: "freemium", Limits: nLimits(10)}},
		{name: "team limits count over", subject: "alice", p: Profile{Tier: "freemium", Limits: nLimits(11)}, want: []string{"up to 17 limits"}},
		{name: "no tier: the largest tier counts", subject: "bob", p: Profile{Limits: nLimits(12)}, want: []string{"up to 17 limits"}},
		{name: "NUL in subject", subject: "a\x00b", want: []string{"invalid subject id", "U+0000"}},
		{name: "empty subject", subject: "", want: []string{"invalid subject id", "empty"}},
		{name: "team key as subject", subject: "team:blue", want: []string{"invalid subject id", "name teams"}},
		{name: "subject too long", subject: strings.Repeat("x", MaxSubjectIDBytes+1), want: []string{"257 bytes"}},
		{name: "subject with newline", subject: "a\nb", want: []string{"unprintable"}},
		{name: "subject not UTF-8", subject: "a\xffb", want: []string{"UTF-8"}},
		{name: "subject with spaces inside", subject: "Jane Doe"},
		{name: "subject with unicode", subject: "zoë@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.ValidateProfile(tt.subject, tt.p)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateProfile = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateProfile = nil; want an error with %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidProfile) && !errors.Is(err, ErrInvalidSubject) {
				t.Errorf("error %v wraps neither ErrInvalidProfile nor ErrInvalidSubject", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// SetProfile applies the same rules and changes nothing.
			ctx := context.Background()
			if tt.subject != "" && ValidateSubjectID(tt.subject) == nil {
				before := status(t, e, t0, tt.subject)
				if serr := e.SetProfile(ctx, tt.subject, tt.p); serr == nil {
					t.Fatal("SetProfile accepted what ValidateProfile refused")
				}
				if after := status(t, e, t0, tt.subject); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("a refused SetProfile changed the status:\n%+v\nwas\n%+v", after, before)
				}
			} else if serr := e.SetProfile(ctx, tt.subject, tt.p); serr == nil {
				t.Fatal("SetProfile accepted an invalid subject id")
			}
		})
	}
}

// TestStoredProfileInvalidAfterReload: a profile valid when set becomes
// invalid when a reload removes its role and team and adds tier limits.
// Its Checks use the configured rules (never unmetered, even on a
// fail-open tier), the problem is logged once, Status shows it, and a new
// profile repairs the subject.
func TestStoredProfileInvalidAfterReload(t *testing.T) {
	var logs logtest.Buffer
	cfg := rulesConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e := newEngine(t, cfg)
	ctx := context.Background()
	p := Profile{Tier: "enterprise", Roles: []string{"analyst"}, Limits: nLimits(10)}
	if err := e.SetProfile(ctx, "bob", p); err != nil {
		t.Fatal(err)
	}
	admitN(t, e, t0, Request{Subject: "bob"}, 2)

	next := rulesConfig()
	delete(next.Roles, "analyst")
	ent := next.Tiers["enterprise"]
	ent.Limits = append(ent.Limits, nLimits(8)...) // 1+8 tier + 10 profile > 16: the profile no longer fits
	ent.Limits[0].Max = 5
	next.Tiers["enterprise"] = ent
	if err := e.Reload(next.Rules); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d, err := e.ChargeAt(ctx, t0, Request{Subject: "bob"})
		if err != nil {
			t.Fatalf("charge %d: %v; a bad profile must not make the engine fail (fail-open would serve it free)", i, err)
		}
		if !d.Allowed || d.Tier != "enterprise" {
			t.Fatalf("charge %d: allowed %v tier %q; want allowed on the profile's tier", i, d.Allowed, d.Tier)
		}
		for _, l := range d.Limits() {
			if strings.HasPrefix(l.Name, "role:") {
				t.Errorf("the removed role's limit %q still applies", l.Name)
			}
		}
		if len(d.Limits()) != 9 {
			t.Errorf("%d limits applied; want the tier's 9", len(d.Limits()))
		}
	}
	// The tier's "hour" limit (max 5 now) meters it: 2 before and 3 after.
	if d := chargeAt(t, e, t0, Request{Subject: "bob"}); d.Allowed {
		t.Fatalf("6th call allowed; want refused by the tier's hour limit (5)")
	}
	if n := strings.Count(logs.String(), "no longer validates"); n != 1 {
		t.Errorf("the bad profile was logged %d times; want once:\n%s", n, logs.String())
	}
	st := status(t, e, t0, "bob")
	if !strings.Contains(st.ProfileProblem, "profile.roles[0]") || !strings.Contains(st.ProfileProblem, "up to") && !strings.Contains(st.ProfileProblem, "analyst") {
		t.Errorf("ProfileProblem %q does not name the problems", st.ProfileProblem)
	}
	if st.Profile.Tier != "enterprise" || len(st.Profile.Limits) != 10 {
		t.Errorf("the stored profile is not shown as stored: %+v", st.Profile)
	}
	// Repair: a valid profile replaces it.
	if err := e.SetProfile(ctx, "bob", Profile{Tier: "enterprise"}); err != nil {
		t.Fatal(err)
	}
	if st := status(t, e, t0, "bob"); st.ProfileProblem != "" {
		t.Errorf("still a problem after the repair: %s", st.ProfileProblem)
	}
}

// TestStoredProfileFromSnapshot: a snapshot written by an older build with
// a profile the engine now refuses loads, is charged by the configured
// rules and can be repaired.
func TestStoredProfileFromSnapshot(t *testing.T) {
	store := NewMemoryStore()
	bad := Profile{Tier: "freemium", Roles: []string{"ghost"}, Limits: []LimitConfig{{Name: "tiny", Period: Period{Every: time.Nanosecond}, Max: 0}}}
	if err := store.Save(context.Background(), []Snapshot{{Key: "old", Version: 3, Profile: bad}}); err != nil {
		t.Fatal(err)
	}
	cfg := rulesConfig()
	cfg.Store = store
	e := newEngine(t, cfg)
	d := chargeAt(t, e, t0, Request{Subject: "old"})
	if !d.Allowed || len(d.Limits()) != 4 {
		t.Fatalf("allowed %v with %d limits; want allowed under freemium's 4", d.Allowed, len(d.Limits()))
	}
	if st := status(t, e, t0, "old"); st.ProfileProblem == "" {
		t.Error("Status shows no problem for a profile with an unknown role and a 1ns period")
	}
}

// TestTierChangeGrant: a tier change mid-period applies the new grant
// minus what was spent this period, at once, clamped at zero; credits are
// untouched; the next period grants the new amount in full.
func TestTierChangeGrant(t *testing.T) {
	cfg := testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{
			"freemium":   {Priority: PriorityLow, Tokens: TokenGrant{Amount: 100, Period: month}},
			"standard":   {Priority: PriorityMedium, Tokens: TokenGrant{Amount: 1000, Period: month}},
			"enterprise": {Priority: PriorityHigh, Tokens: TokenGrant{Unlimited: true, Period: month}},
		},
		Actions: map[string]ActionConfig{"translate": {PerCall: 1, PerThousand: 1000}},
	}}
	tests := []struct {
		name          string
		spend         int64 // spent on freemium before the change
		credits       int64
		to            Tier
		wantAllowance int64
	}{
		{name: "upgrade brings the new grant minus spent", spend: 81, to: "standard", wantAllowance: 1000 - 81},
		{name: "upgrade after spending everything", spend: 100, to: "standard", wantAllowance: 900},
		{name: "no change keeps the allowance", spend: 30, to: "freemium", wantAllowance: 70},
		{name: "upgrade to unlimited", spend: 50, to: "enterprise", wantAllowance: 0},
		{name: "credits are untouched", spend: 20, credits: 7, to: "standard", wantAllowance: 980},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, cfg)
			ctx := context.Background()
			mid := t0.Add(10 * 24 * time.Hour) // mid-month
			if tt.credits > 0 {
				if err := e.SetProfile(ctx, "u", Profile{Tier: "freemium"}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.AddCredits(ctx, "u", tt.credits); err != nil {
					t.Fatal(err)
				}
			}
			if tt.spend > 0 {
				d := chargeAt(t, e, mid, Request{Subject: "u", Action: "translate", Units: tt.spend - 1})
				if !d.Allowed || d.Cost != tt.spend {
					t.Fatalf("spend: allowed %v cost %d; want %d", d.Allowed, d.Cost, tt.spend)
				}
			}
			if err := e.SetProfile(ctx, "u", Profile{Tier: tt.to}); err != nil {
				t.Fatal(err)
			}
			st := status(t, e, mid.Add(time.Hour), "u")
			if tt.to != "enterprise" && st.Allowance != tt.wantAllowance {
				t.Errorf("allowance %d; want %d", st.Allowance, tt.wantAllowance)
			}
			if st.Credits != tt.credits {
				t.Errorf("credits %d; want %d untouched", st.Credits, tt.credits)
			}
		})
	}

	t.Run("upgrade then downgrade mid-period", func(t *testing.T) {
		e := newEngine(t, cfg)
		ctx := context.Background()
		mid := t0.Add(10 * 24 * time.Hour)
		chargeAt(t, e, mid, Request{Subject: "u", Action: "translate", Units: 80}) // 81 of freemium's 100
		if err := e.SetProfile(ctx, "u", Profile{Tier: "standard"}); err != nil {
			t.Fatal(err)
		}
		// The design's case: a 25-token translate right after the upgrade.
		if d := chargeAt(t, e, mid.Add(time.Minute), Request{Subject: "u", Action: "translate", Units: 24}); !d.Allowed || d.Balance != 1000-81-25 {
			t.Fatalf("after the upgrade: allowed %v balance %d; want allowed with %d left", d.Allowed, d.Balance, 1000-81-25)
		}
		// Downgrade: 106 spent this period, more than freemium's 100: clamped to 0.
		if err := e.SetProfile(ctx, "u", Profile{Tier: "freemium"}); err != nil {
			t.Fatal(err)
		}
		if d := chargeAt(t, e, mid.Add(2*time.Minute), Request{Subject: "u", Action: "translate"}); d.Allowed || d.Balance != 0 {
			t.Fatalf("after the downgrade: allowed %v balance %d; want refused with 0", d.Allowed, d.Balance)
		}
		// Back up: the clamp counted freemium's whole 100 as spent, so
		// 900 (the 6 spent beyond it are not charged twice).
		if err := e.SetProfile(ctx, "u", Profile{Tier: "standard"}); err != nil {
			t.Fatal(err)
		}
		if st := status(t, e, mid.Add(3*time.Minute), "u"); st.Allowance != 900 {
			t.Fatalf("back on standard: allowance %d; want 900", st.Allowance)
		}
		// Next month: the full grant.
		if st := status(t, e, t0.AddDate(0, 1, 0), "u"); st.Allowance != 1000 {
			t.Fatalf("next month: allowance %d; want 1000", st.Allowance)
		}
	})

	t.Run("a reload that changes the tier's grant", func(t *testing.T) {
		e := newEngine(t, cfg)
		mid := t0.Add(10 * 24 * time.Hour)
		chargeAt(t, e, mid, Request{Subject: "u", Action: "translate", Units: 39}) // 40 of 100
		next := cfg
		next.Tiers = map[Tier]TierConfig{"freemium": {Priority: PriorityLow, Tokens: TokenGrant{Amount: 300, Period: month}}}
		if err := e.Reload(next.Rules); err != nil {
			t.Fatal(err)
		}
		if st := status(t, e, mid.Add(time.Hour), "u"); st.Allowance != 260 {
			t.Fatalf("allowance %d after the grant rose to 300; want 260", st.Allowance)
		}
	})

	t.Run("survives eviction and a restart", func(t *testing.T) {
		store := NewMemoryStore()
		c := cfg
		c.Store = store
		e := newEngine(t, c)
		mid := t0.Add(10 * 24 * time.Hour)
		chargeAt(t, e, mid, Request{Subject: "u", Action: "translate", Units: 59}) // 60 of 100
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		e2 := newEngine(t, c)
		if err := e2.SetProfile(context.Background(), "u", Profile{Tier: "standard"}); err != nil {
			t.Fatal(err)
		}
		if st := status(t, e2, mid.Add(time.Hour), "u"); st.Allowance != 940 {
			t.Fatalf("allowance %d after a restart and an upgrade; want 940", st.Allowance)
		}
	})

	// A regrant is saved even when the request that made it changed
	// nothing else: the clamp forgets what was spent, so recomputing it
	// from the older snapshot gives another allowance.
	t.Run("a regrant survives eviction", func(t *testing.T) {
		c := cfg
		c.Store, c.Shards, c.CacheSize = NewMemoryStore(), 1, minShardCapacity
		e := newEngine(t, c)
		mid := t0.Add(10 * 24 * time.Hour)
		chargeAt(t, e, mid, Request{Subject: "u", Tier: "standard", Action: "translate", Units: 599}) // 600 of 1000
		if err := e.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Down to freemium, spending nothing: 600 spent, clamped to 0 of 100.
		if d := chargeAt(t, e, mid.Add(time.Minute), Request{Subject: "u", Tier: "freemium"}); !d.Allowed || d.Balance != 0 {
			t.Fatalf("on freemium: allowed %v balance %d; want allowed with 0", d.Allowed, d.Balance)
		}
		for _, s := range []string{"v", "w", "x"} {
			chargeAt(t, e, mid.Add(time.Minute), Request{Subject: s}) // evicts u
		}
		// Back up: freemium's whole 100 counts as spent, as without eviction.
		if d := chargeAt(t, e, mid.Add(2*time.Minute), Request{Subject: "u", Tier: "standard", Action: "translate"}); !d.Allowed || d.Balance != 900-1 {
			t.Fatalf("back on standard after an eviction: allowed %v balance %d; want allowed with %d", d.Allowed, d.Balance, 900-1)
		}
	})
}

func TestAddCreditsBounds(t *testing.T) {
	e := newEngine(t, oneTier())
	ctx := context.Background()
	tests := []struct {
		name  string
		delta int64
		ok    bool
	}{
		{name: "up to the bound", delta: MaxCredits - 10, ok: true},
		{name: "past the bound", delta: 11, ok: false},
		{name: "exactly the bound", delta: 10, ok: true},
		{name: "huge delta", delta: 1 << 62, ok: false},
		{name: "most negative delta", delta: -1 << 63, ok: false},
		{name: "down to zero", delta: -MaxCredits, ok: true},
		{name: "below zero", delta: -1, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := status(t, e, t0, "alice").Credits
			_, err := e.AddCredits(ctx, "alice", tt.delta)
			after := status(t, e, t0, "alice").Credits
			if (err == nil) != tt.ok {
				t.Fatalf("AddCredits(%d) = %v; want ok %v", tt.delta, err, tt.ok)
			}
			if !tt.ok && after != before {
				t.Errorf("a refused delta changed the credits from %d to %d", before, after)
			}
			if after < 0 || after > MaxCredits {
				t.Errorf("credits %d out of [0, %d]", after, MaxCredits)
			}
		})
	}
}
