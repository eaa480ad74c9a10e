package engine

import (
	"testing"
	"time"
)

func TestCapacityFactor(t *testing.T) {
	tests := []struct {
		name   string
		max    int64
		factor float64
		want   int
	}{
		{"halved", 10, 0.5, 5},
		{"doubled", 10, 2, 20},
		{"floor", 5, 0.5, 2},
		{"at least one", 1, 0.1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, oneTier(LimitConfig{Period: hour, Max: tt.max}))
			if err := e.SetCapacityFactor(tt.factor); err != nil {
				t.Fatal(err)
			}
			admitN(t, e, t0, Request{Subject: "alice"}, tt.want)
			if d := chargeAt(t, e, t0, Request{Subject: "alice"}); d.Allowed || d.Binding.Limit != int64(tt.want) {
				t.Fatalf("call %d: allowed=%v limit %d, want refused at limit %d", tt.want+1, d.Allowed, d.Binding.Limit, tt.want)
			}
		})
	}
	e := newEngine(t, oneTier())
	if err := e.SetCapacityFactor(0); err == nil {
		t.Error("SetCapacityFactor(0) accepted")
	}
	if err := e.SetCapacity(-1); err == nil {
		t.Error("SetCapacity(-1) accepted")
	}
}

func TestSheddingOrder(t *testing.T) {
	crit := PriorityCritical
	cfg := testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{
			"freemium":   {Priority: PriorityLow},
			"standard":   {Priority: PriorityMedium},
			"enterprise": {Priority: PriorityHigh},
		},
		Workflows: map[string]WorkflowConfig{"billing": {Priority: &crit}},
		Capacity:  CapacityConfig{RequestsPerSecond: 100},
	}}
	e := newEngine(t, cfg)
	at := t0
	step := func() time.Time { at = at.Add(2 * time.Millisecond); return at }
	critical := Request{Subject: "ops", Workflow: "billing"}
	admitted := 0 // requests admitted this second; capacity is 100/s
	probe := func(tier Tier) bool {
		t.Helper()
		d := chargeAt(t, e, step(), Request{Subject: "p-" + string(tier), Tier: tier})
		if !d.Allowed && d.Reason != ReasonShed {
			t.Fatalf("%s refused with %v", tier, d.Reason)
		}
		if !d.Allowed && d.RetryAfter != time.Second {
			t.Errorf("shed RetryAfter %s, want 1s", d.RetryAfter)
		}
		if d.Allowed {
			admitted++
		}
		return d.Allowed
	}
	fillTo := func(n int) {
		t.Helper()
		for admitted < n {
			admitN(t, e, step(), critical, 1) // critical is never shed
			admitted++
		}
	}
	fillTo(75)
	if !probe("freemium") {
		t.Fatal("low priority shed at utilization 0.75")
	}
	fillTo(85)
	if probe("freemium") {
		t.Fatal("low priority served at 0.85")
	}
	if !probe("standard") || !probe("enterprise") {
		t.Fatal("medium or high shed at 0.85")
	}
	fillTo(95)
	if probe("freemium") || probe("standard") {
		t.Fatal("low or medium served at 0.95")
	}
	if !probe("enterprise") {
		t.Fatal("high shed at 0.95")
	}
	fillTo(105)
	if probe("enterprise") {
		t.Fatal("high served at 1.05")
	}
	if c := e.Capacity(); c.Utilization < 1 || c.RequestsPerSecond != 100 {
		t.Fatalf("Capacity() = %+v", c)
	}
	// Raising the capacity at run time lifts the shedding.
	if err := e.SetCapacity(1000); err != nil {
		t.Fatal(err)
	}
	if !probe("freemium") {
		t.Fatal("low priority shed after raising the capacity")
	}
	// Two seconds later the load has gone.
	if err := e.SetCapacity(100); err != nil {
		t.Fatal(err)
	}
	at = at.Add(2 * time.Second)
	if !probe("freemium") {
		t.Fatal("low priority shed with no load")
	}
}
