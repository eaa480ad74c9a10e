package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

func TestFromDecision(t *testing.T) {
	hour, err := engine.ParsePeriod("hour")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"freemium": {
				Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 1}},
				Tokens: engine.TokenGrant{Amount: 100, Period: hour},
			},
		},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: 2, PerThousand: 1000}},
	}, engine.Options{})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	now := t0.Add(5 * time.Minute)
	req := engine.Request{Subject: "alice", Action: "translate", Units: 3}
	tests := []struct {
		name     string
		wantKind Kind
		charged  int64
	}{
		{name: "allowed", wantKind: KindCharge, charged: 5},
		{name: "refused by the hourly limit", wantKind: KindRejection, charged: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := eng.ChargeAt(context.Background(), now, req)
			if err != nil {
				t.Fatalf("ChargeAt: %v", err)
			}
			r := FromDecision(&d, "trace-1", now)
			if r.ID != d.ID || r.Kind != tc.wantKind || r.Charged != tc.charged || r.Cost != 5 ||
				r.Subject != "alice" || r.Tier != "freemium" || r.Action != "translate" || r.Units != 3 ||
				r.TraceID != "trace-1" || !r.Time.Equal(now) || r.Allowed != d.Allowed || r.Reason != d.Reason.String() {
				t.Fatalf("FromDecision = %+v\nfrom %+v", r, d)
			}
			if !r.HasBalance || r.Balance != 95 || r.BalanceOwner != "alice" {
				t.Errorf("balance = %d (has %v, owner %q), want 95 of alice", r.Balance, r.HasBalance, r.BalanceOwner)
			}
			if len(r.Limits) != 1 || r.Limits[0].Name != "hour" || r.Limits[0].Limit != 1 || r.Limits[0].Remaining != 0 || r.Limits[0].Period != "hour" {
				t.Errorf("limits = %+v, want the hourly limit with 0 remaining", r.Limits)
			}
		})
	}
}

func TestNewAdminChange(t *testing.T) {
	r, err := NewAdminChange(t0, "root-token", "team:ops", "credits", "0", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindAdmin || r.ID.Version() != 7 || r.Subject != "team:ops" ||
		*r.Admin != (AdminChange{Actor: "root-token", What: "credits", Before: "0", After: "1000"}) {
		t.Fatalf("NewAdminChange = %+v", r)
	}
	if _, ok := r.rollupDelta(); ok {
		t.Error("an admin record must not count as usage")
	}
}
