package engine

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestMultiLimitAtomicity(t *testing.T) {
	e := newEngine(t, oneTier(
		LimitConfig{Period: hour, Max: 5},
		LimitConfig{Period: day, Max: 7},
	))
	req := Request{Subject: "alice"}
	admitN(t, e, t0, req, 4)
	later := t0.Add(time.Hour)
	admitN(t, e, later, req, 3)
	d := chargeAt(t, e, later.Add(time.Second), req)
	if d.Allowed || d.Binding.Name != "day" {
		t.Fatalf("got allowed=%v binding %q, want a refusal by the daily limit", d.Allowed, d.Binding.Name)
	}
	s := status(t, e, later.Add(2*time.Second), "alice")
	if got := limitUsed(t, s, "hour"); got != 3 {
		t.Errorf("hourly usage %d after the refusal, want 3 (the refusal must charge nothing)", got)
	}
	if got := limitUsed(t, s, "day"); got != 7 {
		t.Errorf("daily usage %d, want 7", got)
	}
}

func TestUserOverrideReplacesTierLimit(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 10})
	cfg.Users = map[string]UserConfig{"alice": {Limits: []LimitConfig{{Period: hour, Max: 2}}}}
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice"}, 2)
	d := chargeAt(t, e, t0, Request{Subject: "alice"})
	if d.Allowed || d.Binding.Name != "hour" || d.Binding.Limit != 2 || len(d.Limits()) != 1 {
		t.Fatalf("alice: allowed=%v binding %+v limits %d; want the override (one limit of 2) to refuse", d.Allowed, d.Binding, len(d.Limits()))
	}
	admitN(t, e, t0, Request{Subject: "bob"}, 10)
}

func TestRoleAndWorkflowLimits(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 100})
	cfg.Roles = map[string]RoleConfig{"intern": {Limits: []LimitConfig{{Period: hour, Max: 1}}}}
	cfg.Workflows = map[string]WorkflowConfig{"nightly": {Limits: []LimitConfig{{Period: hour, Max: 2}}}}
	cfg.Users = map[string]UserConfig{"ivy": {Roles: []string{"intern"}}}
	e := newEngine(t, cfg)

	// Roles from the config and from the request both count, once.
	admitN(t, e, t0, Request{Subject: "ivy", Roles: []string{"intern"}}, 1)
	d := chargeAt(t, e, t0, Request{Subject: "ivy"})
	if d.Allowed || d.Binding.Name != "role:intern:hour" {
		t.Fatalf("ivy: allowed=%v binding %q, want role:intern:hour", d.Allowed, d.Binding.Name)
	}
	admitN(t, e, t0, Request{Subject: "joe", Roles: []string{"intern"}}, 1)
	if d := chargeAt(t, e, t0, Request{Subject: "joe", Roles: []string{"intern"}}); d.Allowed {
		t.Fatal("asserted role limit not applied")
	}

	wf := Request{Subject: "kim", Workflow: "nightly"}
	admitN(t, e, t0, wf, 2)
	d = chargeAt(t, e, t0, wf)
	if d.Allowed || d.Binding.Name != "workflow:nightly:hour" {
		t.Fatalf("workflow: allowed=%v binding %q, want workflow:nightly:hour", d.Allowed, d.Binding.Name)
	}
	admitN(t, e, t0, Request{Subject: "kim"}, 5) // outside the workflow
}

func TestFeatureNotInPlan(t *testing.T) {
	cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{
		"freemium":   {Priority: PriorityLow, Features: []string{"translate"}},
		"standard":   {Priority: PriorityMedium, Features: []string{"translate", "summarize"}},
		"enterprise": {Priority: PriorityHigh},
	},
	}}
	cfg.Roles = map[string]RoleConfig{"beta": {Features: []string{"summarize"}}}
	cfg.Workflows = map[string]WorkflowConfig{"batch": {}}
	e := newEngine(t, cfg)
	tests := []struct {
		name     string
		req      Request
		allowed  bool
		required Tier
	}{
		{"freemium translate", Request{Subject: "a", Action: "translate"}, true, ""},
		{"freemium summarize", Request{Subject: "a", Action: "summarize"}, false, "standard"},
		{"freemium summarize with role", Request{Subject: "a", Action: "summarize", Roles: []string{"beta"}}, true, ""},
		{"standard summarize", Request{Subject: "b", Tier: "standard", Action: "summarize"}, true, ""},
		{"standard workflow", Request{Subject: "b", Tier: "standard", Action: "translate", Workflow: "batch"}, false, "enterprise"},
		{"enterprise anything", Request{Subject: "c", Tier: "enterprise", Action: "summarize", Workflow: "batch"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := chargeAt(t, e, t0, tt.req)
			if d.Allowed != tt.allowed {
				t.Fatalf("allowed=%v reason %v, want allowed=%v", d.Allowed, d.Reason, tt.allowed)
			}
			if !tt.allowed && (d.Reason != ReasonFeatureNotInPlan || d.RequiredTier != tt.required) {
				t.Fatalf("reason %v required tier %q, want feature_not_in_plan and %q", d.Reason, d.RequiredTier, tt.required)
			}
		})
	}
}

func TestMaxDelayReservations(t *testing.T) {
	cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {
		Limits:   []LimitConfig{{Period: minute, Max: 2}},
		MaxDelay: 30 * time.Second,
	}},
	}}
	e := newEngine(t, cfg)
	req := Request{Subject: "alice"}
	at := t0.Add(40 * time.Second)
	admitN(t, e, at, req, 2)
	at = t0.Add(45 * time.Second)
	for i := range 2 {
		d := chargeAt(t, e, at, req)
		if !d.Allowed || d.Delay != 15*time.Second {
			t.Fatalf("reservation %d: allowed=%v delay %s, want admitted after 15s", i+1, d.Allowed, d.Delay)
		}
	}
	if d := chargeAt(t, e, at, req); d.Allowed {
		t.Fatalf("third reservation admitted (delay %s): the next window is full", d.Delay)
	}
	// Stepping the clock into the next minute: the reservations are its usage.
	if d := chargeAt(t, e, t0.Add(61*time.Second), req); d.Allowed || d.Binding.Used != 2 {
		t.Fatalf("next minute: allowed=%v used %d, want refused with the 2 reservations counted", d.Allowed, d.Binding.Used)
	}

	tests := []struct {
		name string
		at   time.Time
		req  Request
	}{
		{"delay beyond max_delay", t0.Add(2*time.Minute + 20*time.Second), Request{Subject: "bob"}},
		{"past the deadline", t0.Add(2*time.Minute + 45*time.Second),
			Request{Subject: "bob", Deadline: t0.Add(2*time.Minute + 50*time.Second)}},
	}
	admitN(t, e, t0.Add(2*time.Minute+10*time.Second), Request{Subject: "bob"}, 2)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := chargeAt(t, e, tt.at, tt.req); d.Allowed || d.Reason != ReasonWindowExceeded {
				t.Fatalf("allowed=%v delay %s, want refused", d.Allowed, d.Delay)
			}
		})
	}
}

func TestChargeWaitStopsWithContext(t *testing.T) {
	cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {
		Limits: []LimitConfig{{Period: minute, Max: 1}}, MaxDelay: time.Minute}},
	}}
	at := t0.Add(30 * time.Second)
	cfg.Now = func() time.Time { return at }
	e := newEngine(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if d, err := e.Charge(ctx, Request{Subject: "alice"}); err != nil || !d.Allowed || d.Delay != 0 {
		t.Fatalf("first: %+v %v", d, err)
	}
	cancel()
	d, err := e.Charge(ctx, Request{Subject: "alice"})
	if !errors.Is(err, context.Canceled) || !d.Allowed || d.Delay != 30*time.Second {
		t.Fatalf("Charge with a cancelled wait = allowed %v delay %s err %v; want the reservation and context.Canceled", d.Allowed, d.Delay, err)
	}
}

func TestTierUpgradeKeepsUsage(t *testing.T) {
	cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{
		"freemium": {Priority: PriorityLow, Limits: []LimitConfig{{Period: hour, Max: 3}}},
		"standard": {Priority: PriorityMedium, Limits: []LimitConfig{{Period: hour, Max: 10}}},
	},
	}}
	e := newEngine(t, cfg)
	req := Request{Subject: "alice"}
	admitN(t, e, t0, req, 3)
	if d := chargeAt(t, e, t0, req); d.Allowed || d.Tier != "freemium" {
		t.Fatalf("fourth freemium call: allowed=%v tier %q", d.Allowed, d.Tier)
	}
	if err := e.SetProfile(context.Background(), "alice", Profile{Tier: "standard"}); err != nil {
		t.Fatal(err)
	}
	d := chargeAt(t, e, t0, req)
	if !d.Allowed || d.Tier != "standard" || d.Binding.Used != 4 || d.Priority != PriorityMedium {
		t.Fatalf("after upgrade: allowed=%v tier %q used %d priority %v; want standard with usage 4", d.Allowed, d.Tier, d.Binding.Used, d.Priority)
	}
	if err := e.SetProfile(context.Background(), "alice", Profile{Tier: "platinum"}); !errors.Is(err, ErrUnknownTier) {
		t.Fatalf("SetProfile(unknown tier) = %v, want ErrUnknownTier", err)
	}
	if s := status(t, e, t0, "alice"); s.Profile.Tier != "standard" || s.Tier != "standard" {
		t.Fatalf("status tier %q profile %+v", s.Tier, s.Profile)
	}
}

func TestReloadAppliesToCountedUsage(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 5})
	e := newEngine(t, cfg)
	req := Request{Subject: "alice"}
	admitN(t, e, t0, req, 4)
	if err := e.Reload(oneTier(LimitConfig{Period: hour, Max: 3}).Rules); err != nil {
		t.Fatal(err)
	}
	if d := chargeAt(t, e, t0, req); d.Allowed || d.Binding.Limit != 3 || d.Binding.Used != 4 {
		t.Fatalf("after lowering: allowed=%v binding %+v, want refused at 4 of 3", d.Allowed, d.Binding)
	}
	if err := e.Reload(oneTier(LimitConfig{Period: hour, Max: 6}).Rules); err != nil {
		t.Fatal(err)
	}
	admitN(t, e, t0, req, 2)
	if d := chargeAt(t, e, t0, req); d.Allowed {
		t.Fatal("seventh call admitted with a limit of 6")
	}
	if err := e.Reload(Rules{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Reload(empty) = %v, want ErrInvalidConfig", err)
	}
	if got := e.Rules().Tiers["standard"].Limits[0].Max; got != 6 {
		t.Fatalf("Rules after a failed reload have max %d, want 6", got)
	}
}

// TestReloadKeepsOptions checks that a reload swaps the rules and nothing
// of the wiring: the clock, the shards, the store and the events stay
// those given to New.
func TestReloadKeepsOptions(t *testing.T) {
	store, rec := NewMemoryStore(), &recorder{}
	clock := t0.Add(30 * time.Minute)
	cfg := oneTier(LimitConfig{Period: hour, Max: 2})
	cfg.Options = Options{Store: store, Events: rec, Shards: 4, Now: func() time.Time { return clock }}
	e := newEngine(t, cfg)
	next := oneTier(LimitConfig{Period: hour, Max: 1})
	next.Alerts.ThresholdPercent = 50
	if err := e.Reload(next.Rules); err != nil {
		t.Fatal(err)
	}
	d, err := e.Charge(context.Background(), Request{Subject: "alice"})
	if err != nil || !d.Allowed || d.Binding.Limit != 1 {
		t.Fatalf("Charge after the reload = %+v, %v; want admitted under a limit of 1", d, err)
	}
	if want := windowEnd(windowStart(clock.UnixNano(), hour, time.UTC), hour, time.UTC); d.Binding.Reset.UnixNano() != want {
		t.Errorf("reset %s: the charge did not use the clock given to New", d.Binding.Reset)
	}
	if got := e.Stats().Shards; got != 4 {
		t.Errorf("%d shards after the reload, want the 4 given to New", got)
	}
	if rec.count(EventThreshold) == 0 {
		t.Error("no threshold event reached the Events given to New")
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := store.Load(context.Background(), "alice"); err != nil || !ok {
		t.Errorf("the Store given to New does not hold alice after a flush: ok=%v err=%v", ok, err)
	}
}

func TestEventsOncePerWindow(t *testing.T) {
	rec := &recorder{}
	cfg := oneTier(LimitConfig{Period: hour, Max: 10})
	cfg.Events = rec
	e := newEngine(t, cfg)
	req := Request{Subject: "alice"}
	for i := 1; i <= 10; i++ {
		d := chargeAt(t, e, t0, req)
		wantWarn := ""
		if i >= 9 {
			wantWarn = "Approaching hourly limit."
		}
		if d.Warning != wantWarn {
			t.Fatalf("call %d: warning %q, want %q", i, d.Warning, wantWarn)
		}
	}
	for range 3 {
		chargeAt(t, e, t0, req)
	}
	if n := rec.count(EventThreshold); n != 1 {
		t.Errorf("%d threshold events in one window, want 1", n)
	}
	if n := rec.count(EventBreach); n != 1 {
		t.Errorf("%d breach events in one window, want 1", n)
	}
	admitN(t, e, t0.Add(time.Hour), req, 10)
	chargeAt(t, e, t0.Add(time.Hour), req)
	if n, b := rec.count(EventThreshold), rec.count(EventBreach); n != 2 || b != 2 {
		t.Errorf("after a second window: %d threshold and %d breach events, want 2 and 2", n, b)
	}
	admitN(t, e, t0, Request{Subject: "bob"}, 9)
	if n := rec.count(EventThreshold); n != 3 {
		t.Errorf("another subject: %d threshold events, want 3", n)
	}
	if s := e.Stats(); s.EventsEmitted != 5 {
		t.Errorf("Stats.EventsEmitted = %d, want 5", s.EventsEmitted)
	}
	ev := rec.events[0]
	if ev.Subject != "alice" || ev.Limit.Name != "hour" || !ev.Window.Equal(t0) || ev.DecisionID.Version() != 7 {
		t.Errorf("threshold event %+v", ev)
	}
}

func TestWarningPicksHighestRatio(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 100}, LimitConfig{Period: day, Max: 10})
	cfg.Alerts.ThresholdPercent = 80
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice"}, 7)
	if d := chargeAt(t, e, t0, Request{Subject: "alice"}); d.Warning != "Approaching daily limit." {
		t.Fatalf("warning %q, want the daily one", d.Warning)
	}
}

func TestIdentityAndUnknownSubjects(t *testing.T) {
	cfg := oneTier()
	cfg.DenyUnknown = true
	cfg.Users = map[string]UserConfig{"alice": {}}
	cfg.Roles = map[string]RoleConfig{"x": {}}
	e := newEngine(t, cfg)
	tests := []struct {
		name   string
		req    Request
		reason Reason
	}{
		{"no identity", Request{}, ReasonNoIdentity},
		{"configured user", Request{Subject: "alice"}, ReasonOK},
		{"unknown subject", Request{Subject: "mallory"}, ReasonUnknownSubject},
		{"asserted tier", Request{Subject: "trent", Tier: "standard"}, ReasonOK},
		{"reserved team key", Request{Subject: "team:x"}, ReasonUnknownSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := chargeAt(t, e, t0, tt.req); d.Reason != tt.reason || d.Allowed != (tt.reason == ReasonOK) {
				t.Fatalf("reason %v allowed %v, want %v", d.Reason, d.Allowed, tt.reason)
			}
		})
	}
	if err := e.SetProfile(context.Background(), "mallory", Profile{Roles: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if d := chargeAt(t, e, t0, Request{Subject: "mallory"}); !d.Allowed {
		t.Fatalf("subject with a profile refused: %v", d.Reason)
	}
	if s := e.Stats(); s.Subjects != 3 {
		t.Errorf("%d subjects cached, want 3 (alice, trent, mallory): an unknown subject must not take a cache entry", s.Subjects)
	}
}

func TestDecisionID(t *testing.T) {
	e := newEngine(t, oneTier())
	now := t0.Add(1234567 * time.Microsecond)
	a := chargeAt(t, e, now, Request{Subject: "alice"})
	b := chargeAt(t, e, now.Add(time.Millisecond), Request{Subject: "alice"})
	if a.ID.Version() != 7 || a.ID.Variant().String() != "RFC4122" {
		t.Fatalf("id %s: version %d variant %s", a.ID, a.ID.Version(), a.ID.Variant())
	}
	sec, nsec := a.ID.Time().UnixTime()
	if time.Unix(sec, nsec).UnixMilli() != now.UnixMilli() {
		t.Errorf("id time %s, want %s", time.Unix(sec, nsec), now)
	}
	if a.ID.String() >= b.ID.String() || a.ID == b.ID {
		t.Errorf("ids not time-ordered: %s then %s", a.ID, b.ID)
	}
}

func TestTooManyLimits(t *testing.T) {
	var limits []LimitConfig
	for i := range MaxLimitsPerRequest + 1 {
		limits = append(limits, LimitConfig{Name: string(rune('a' + i)), Period: hour, Max: 10})
	}
	cfg := oneTier(limits...)
	tc := cfg.Tiers["standard"]
	tc.FailureMode = FailOpen
	cfg.Tiers["standard"] = tc
	e := newEngine(t, cfg)
	d, err := e.ChargeAt(context.Background(), t0, Request{Subject: "alice"})
	if !errors.Is(err, ErrTooManyLimits) || d.Tier != "standard" {
		t.Fatalf("err %v tier %q, want ErrTooManyLimits and the tier set", err, d.Tier)
	}
	// Fail-open covers an outage, not a request that cannot be metered:
	// such a request is never served unmetered.
	if d.FailureMode != FailClosed {
		t.Fatalf("failure mode %v on a fail-open tier, want closed for ErrTooManyLimits", d.FailureMode)
	}
}

func TestSlidingReservation(t *testing.T) {
	tests := []struct {
		name     string
		maxDelay time.Duration
		want     time.Duration // 0: refused
	}{
		{"fits within max_delay", 40 * time.Second, 35 * time.Second},
		{"needs more than max_delay", 30 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {
				Limits: []LimitConfig{{Period: minute, Max: 2, Mode: sliding()}}, MaxDelay: tt.maxDelay}},
			}})
			req := Request{Subject: "alice"}
			admitN(t, e, t0.Add(50*time.Second), req, 2)
			// In the next minute the previous 2 weigh (120s-t)/60s each: one
			// more fits from t = 90s, 35s after 55s.
			d := chargeAt(t, e, t0.Add(55*time.Second), req)
			if d.Allowed != (tt.want > 0) || d.Delay != tt.want {
				t.Fatalf("allowed=%v delay %s, want delay %s", d.Allowed, d.Delay, tt.want)
			}
			if tt.want == 0 {
				return
			}
			if d := chargeAt(t, e, t0.Add(90*time.Second), req); d.Allowed && d.Delay == 0 {
				t.Fatal("request admitted at once at 90s: the reservation was not counted")
			}
		})
	}
}

func TestProfileTeamSwitch(t *testing.T) {
	cfg := oneTier()
	cfg.Teams = map[string]TeamConfig{
		"a": {Members: []string{"alice"}, Limits: []LimitConfig{{Period: hour, Max: 1}}},
		"b": {Limits: []LimitConfig{{Period: hour, Max: 3}}},
	}
	cfg.Shards = 64 // the two teams and alice likely sit in different shards
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice"}, 1)
	if d := chargeAt(t, e, t0, Request{Subject: "alice"}); d.Allowed || d.Team != "a" {
		t.Fatalf("second request in team a: allowed=%v team %q", d.Allowed, d.Team)
	}
	if err := e.SetProfile(context.Background(), "alice", Profile{Team: "b"}); err != nil {
		t.Fatal(err)
	}
	admitN(t, e, t0, Request{Subject: "alice"}, 3)
	d := chargeAt(t, e, t0, Request{Subject: "alice"})
	if d.Allowed || d.Team != "b" || d.Binding.Name != "team:hour" || d.Binding.Limit != 3 {
		t.Fatalf("fourth request in team b: allowed=%v team %q binding %+v", d.Allowed, d.Team, d.Binding)
	}
	if s := status(t, e, t0, "alice"); s.Team != "b" || s.Profile.Team != "b" {
		t.Fatalf("status team %q profile %+v", s.Team, s.Profile)
	}
}

func TestDirtyListStaysBounded(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 1000})
	cfg.Shards, cfg.CacheSize = 1, 10
	e := newEngine(t, cfg)
	for i := range 5000 {
		chargeAt(t, e, t0, Request{Subject: "s" + strconv.Itoa(i%40)})
	}
	sh := &e.shards[0]
	sh.mu.Lock()
	n := len(sh.dirty)
	sh.mu.Unlock()
	if n > 2*10+64 {
		t.Fatalf("dirty list holds %d keys for a cache of 10 never flushed", n)
	}
}

func TestReservationChargesEveryLimit(t *testing.T) {
	e := newEngine(t, testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {
		Limits:   []LimitConfig{{Period: minute, Max: 1}, {Period: hour, Max: 3}},
		MaxDelay: time.Minute,
	}},
	}})
	req := Request{Subject: "alice"}
	admitN(t, e, t0.Add(59*time.Minute+30*time.Second), req, 1)
	// The minute is full; the next minute is also the next hour.
	d := chargeAt(t, e, t0.Add(59*time.Minute+40*time.Second), req)
	if !d.Allowed || d.Delay != 20*time.Second {
		t.Fatalf("allowed=%v delay %s, want a reservation 20s ahead", d.Allowed, d.Delay)
	}
	s := status(t, e, t0.Add(time.Hour), "alice")
	if m, h := limitUsed(t, s, "minute"), limitUsed(t, s, "hour"); m != 1 || h != 1 {
		t.Fatalf("in the next hour: minute used %d, hour used %d; want the reservation in both", m, h)
	}
	admitN(t, e, t0.Add(time.Hour+time.Minute), req, 1)
	admitN(t, e, t0.Add(time.Hour+2*time.Minute), req, 1)
	if d := chargeAt(t, e, t0.Add(time.Hour+3*time.Minute), req); d.Allowed {
		t.Fatal("fourth request in the hour admitted: the reservation did not count against the hourly limit")
	}
}
