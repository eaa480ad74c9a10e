package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// settleConfig has a tier of 1000 tokens a month and 10 calls an hour, and
// translate priced at 10 a call plus 1 per thousand... per word (1000 per
// thousand words).
func settleConfig(rule *SettleRule) Config {
	return Config{
		Tiers: map[Tier]TierConfig{"standard": {
			Limits: []LimitConfig{{Period: hour, Max: 10}},
			Tokens: TokenGrant{Amount: 1000, Period: month},
		}},
		Actions: map[string]ActionConfig{"translate": {PerCall: 10, PerThousand: 1000, Settle: rule}},
	}
}

func TestSettleAt(t *testing.T) {
	usage := &SettleRule{RefundStatuses: []StatusRange{{503, 503}}, RefundWindows: true, UsageHeader: "x-usage"}
	tests := []struct {
		name    string
		rule    *SettleRule
		units   int64
		status  int
		headers map[string]string
		want    SettleOutcome
		balance int64 // after the settlement
		calls   int64 // used in the hour window after the settlement
		refund  int64
		extra   int64
		owed    int64
	}{
		{name: "default refunds 5xx", units: 90, status: 502, want: SettleRefund, balance: 1000, calls: 1, refund: 100},
		{name: "default refunds no response", units: 90, status: 0, want: SettleRefund, balance: 1000, calls: 1, refund: 100},
		{name: "default keeps 2xx", units: 90, status: 200, want: SettleKept, balance: 900, calls: 1},
		{name: "default keeps 4xx", units: 90, status: 429, want: SettleKept, balance: 900, calls: 1},
		{name: "refund with windows", rule: usage, units: 90, status: 503, want: SettleRefund, balance: 1000, calls: 0, refund: 100},
		{name: "rule without 500 keeps it", rule: usage, units: 90, status: 500, want: SettleKept, balance: 900, calls: 1},
		{name: "adjust down", rule: usage, units: 90, status: 200, headers: map[string]string{"x-usage": "40"},
			want: SettleAdjust, balance: 950, calls: 1, refund: 50},
		{name: "adjust up", rule: usage, units: 90, status: 200, headers: map[string]string{"x-usage": "290"},
			want: SettleAdjust, balance: 700, calls: 1, extra: 200},
		{name: "adjust up beyond the balance is owed", rule: usage, units: 90, status: 200, headers: map[string]string{"x-usage": "1990"},
			want: SettleAdjust, balance: 0, calls: 1, extra: 1900, owed: 1000},
		{name: "invalid header changes nothing", rule: usage, units: 90, status: 200, headers: map[string]string{"x-usage": "-3"},
			want: SettleInvalid, balance: 900, calls: 1},
		{name: "header beyond MaxQuantity is invalid", rule: usage, units: 90, status: 200, headers: map[string]string{"x-usage": "9007199254740992"},
			want: SettleInvalid, balance: 900, calls: 1},
		{name: "no header keeps it", rule: usage, units: 90, status: 200, want: SettleKept, balance: 900, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, settleConfig(tt.rule))
			d := chargeAt(t, e, t0, Request{Subject: "ann", Tier: "standard", Action: "translate", Units: tt.units})
			if !d.Allowed || d.Charged != 100 {
				t.Fatalf("charge: allowed %v charged %d, want allowed and 100", d.Allowed, d.Charged)
			}
			got, err := e.SettleAt(context.Background(), Settlement{DecisionID: d.ID, Status: tt.status, Headers: tt.headers}, t0.Add(time.Second))
			if err != nil {
				t.Fatalf("SettleAt: %v", err)
			}
			if got.Outcome != tt.want || got.Refunded != tt.refund || got.Extra != tt.extra || got.Owed != tt.owed {
				t.Errorf("settled %v refunded %d extra %d owed %d, want %v %d %d %d",
					got.Outcome, got.Refunded, got.Extra, got.Owed, tt.want, tt.refund, tt.extra, tt.owed)
			}
			if got.Subject != "ann" || got.Action != "translate" || got.Charged != 100 || got.DecisionID != d.ID {
				t.Errorf("settled %+v does not describe the decision", got)
			}
			s := status(t, e, t0.Add(time.Second), "ann")
			if s.Balance != tt.balance {
				t.Errorf("balance %d, want %d", s.Balance, tt.balance)
			}
			if used := limitUsed(t, s, "hour"); used != tt.calls {
				t.Errorf("hour used %d, want %d", used, tt.calls)
			}
			again, err := e.SettleAt(context.Background(), Settlement{DecisionID: d.ID, Status: tt.status, Headers: tt.headers}, t0.Add(2*time.Second))
			if err != nil || again.Outcome != SettleDuplicate {
				t.Errorf("second settlement: %v, %v; want duplicate", again.Outcome, err)
			}
			if s := status(t, e, t0.Add(2*time.Second), "ann"); s.Balance != tt.balance {
				t.Errorf("balance after the duplicate %d, want %d", s.Balance, tt.balance)
			}
		})
	}
}

func TestSettleOffHoldsNothing(t *testing.T) {
	e := newEngine(t, settleConfig(&SettleRule{Off: true}))
	d := chargeAt(t, e, t0, Request{Subject: "ann", Tier: "standard", Action: "translate", Units: 90})
	if st := e.PendingStats(); st.Held != 0 {
		t.Fatalf("held %d, want 0 for an action with settle off", st.Held)
	}
	got, err := e.SettleAt(context.Background(), Settlement{DecisionID: d.ID, Status: 503}, t0)
	if err != nil || got.Outcome != SettleUnmatched {
		t.Fatalf("settle: %v, %v; want unmatched", got.Outcome, err)
	}
	if s := status(t, e, t0, "ann"); s.Balance != 900 {
		t.Fatalf("balance %d, want 900", s.Balance)
	}
}

func TestSettleUnknownAndAgedOut(t *testing.T) {
	cfg := settleConfig(nil)
	cfg.PendingSize, cfg.PendingMaxAge = pendingStripes, time.Minute // one per stripe
	cfg.Tiers["standard"] = TierConfig{Limits: []LimitConfig{{Period: hour, Max: 1000}}, Tokens: TokenGrant{Amount: 1000, Period: month}}
	e := newEngine(t, cfg)
	req := Request{Subject: "ann", Tier: "standard", Action: "translate", Units: 1}
	old := chargeAt(t, e, t0, req)
	got, err := e.SettleAt(context.Background(), Settlement{DecisionID: uuid.Must(uuid.NewV7()), Status: 503}, t0)
	if err != nil || got.Outcome != SettleUnmatched {
		t.Fatalf("unknown id: %v, %v; want unmatched", got.Outcome, err)
	}
	if st := e.PendingStats(); st.Held != 1 {
		t.Fatalf("held %d, want 1", st.Held)
	}
	got, err = e.SettleAt(context.Background(), Settlement{DecisionID: old.ID, Status: 503}, t0.Add(2*time.Minute))
	if err != nil || got.Outcome != SettleAgedOut {
		t.Fatalf("old id: %v, %v; want aged_out", got.Outcome, err)
	}
	if st := e.PendingStats(); st.Held != 0 || st.AgedOut != 1 {
		t.Fatalf("stats %+v, want 0 held, 1 aged out", st)
	}
	// Past the size, the oldest of a stripe makes room: it is counted,
	// and its settlement says it aged out.
	t1 := t0.Add(3 * time.Minute)
	const n = 3 * pendingStripes
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = chargeAt(t, e, t1.Add(time.Duration(i)*time.Millisecond), req).ID
	}
	st := e.PendingStats()
	if st.Held > pendingStripes || st.Held+int(st.Evicted) != n {
		t.Fatalf("stats %+v, want at most %d held and the rest of %d evicted", st, pendingStripes, n)
	}
	refunds := 0
	for _, id := range ids {
		got, err := e.SettleAt(context.Background(), Settlement{DecisionID: id, Status: 503}, t1)
		switch {
		case err != nil:
			t.Fatal(err)
		case got.Outcome == SettleRefund && got.Refunded == 11:
			refunds++
		case got.Outcome != SettleAgedOut:
			t.Fatalf("id %s: %v refunded %d, want a refund of 11 or aged_out", id, got.Outcome, got.Refunded)
		}
	}
	if refunds != st.Held {
		t.Fatalf("%d refunds, want one per held decision (%d)", refunds, st.Held)
	}
}

func TestSettleRefundAfterGrantPeriodEndsGivesBackCreditsOnly(t *testing.T) {
	cfg := settleConfig(nil)
	cfg.Users = map[string]UserConfig{"ann": {Tier: "standard", Credits: 50}}
	cfg.PendingMaxAge = 40 * 24 * time.Hour
	e := newEngine(t, cfg)
	// 1000 allowance + 50 credits; a cost of 1010 takes all the allowance and 10 credits.
	d := chargeAt(t, e, t0, Request{Subject: "ann", Action: "translate", Units: 1000})
	if !d.Allowed || d.Charged != 1010 {
		t.Fatalf("charge: allowed %v charged %d", d.Allowed, d.Charged)
	}
	next := time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC)
	got, err := e.SettleAt(context.Background(), Settlement{DecisionID: d.ID, Status: 503}, next)
	if err != nil || got.Refunded != 10 {
		t.Fatalf("settle: refunded %d, %v; want 10 (the allowance was refilled)", got.Refunded, err)
	}
	if s := status(t, e, next, "ann"); s.Balance != 1050 {
		t.Fatalf("balance %d, want 1050", s.Balance)
	}
}
