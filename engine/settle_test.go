package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// settleConfig prices "translate" (default rule: refund 5xx and no
// response), "llm" (refunds windows too and reads x-usage-tokens), and
// "free" (settlement off). Every tier grants 1000 tokens a month; "small"
// grants 200. Team "crew" pays its members' costs.
func settleConfig() testConfig {
	hourCalls := LimitConfig{Name: "hour", Period: hour, Max: 100}
	return testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{
			"standard": {Priority: PriorityMedium, Limits: []LimitConfig{hourCalls}, Tokens: TokenGrant{Amount: 1000, Period: month}},
			"small":    {Priority: PriorityMedium, Limits: []LimitConfig{hourCalls}, Tokens: TokenGrant{Amount: 200, Period: month}},
		},
		DefaultTier: "standard",
		Actions: map[string]ActionConfig{
			"translate": {PerCall: 10, PerThousand: 1000},
			"llm": {PerCall: 10, PerThousand: 1000, Settle: &SettleRule{
				RefundStatuses: []StatusRange{{0, 0}, {500, 599}}, RefundWindows: true, UsageHeader: "x-usage-tokens"}},
			"free": {PerCall: 5, Settle: &SettleRule{Off: true}},
			"huge": {PerThousand: 1_000_000, Settle: &SettleRule{UsageHeader: "x-usage-tokens"}},
		},
		Users: map[string]UserConfig{"poor": {Tier: "small"}},
		Teams: map[string]TeamConfig{"crew": {Members: []string{"mate"}, Tokens: TokenGrant{Amount: 5000, Period: month},
			Limits: []LimitConfig{{Name: "team-hour", Period: hour, Max: 1000}}}},
	}}
}

func settleAt(t testing.TB, e *Engine, now time.Time, s Settlement) Settled {
	t.Helper()
	r, err := e.SettleAt(context.Background(), s, now)
	if err != nil {
		t.Fatalf("SettleAt(%v): %v", s, err)
	}
	return r
}

func TestSettle(t *testing.T) {
	usage := func(v string) map[string]string { return map[string]string{"x-usage-tokens": v} }
	tests := []struct {
		name    string
		req     Request
		after   time.Duration // from the decision to the settlement
		status  int
		headers map[string]string
		want    Settled // Outcome and amounts
		// wantBalance is the owner's balance after; wantHour the subject's
		// "hour" usage after (the decision counted 1).
		wantBalance, wantHour int64
	}{
		{name: "refund on 503", req: Request{Action: "translate", Units: 40}, status: 503,
			want: Settled{Outcome: SettleRefund, Charged: 50, Refunded: 50}, wantBalance: 1000, wantHour: 1},
		{name: "no response refunds", req: Request{Action: "translate", Units: 40}, status: 0,
			want: Settled{Outcome: SettleRefund, Charged: 50, Refunded: 50}, wantBalance: 1000, wantHour: 1},
		{name: "no refund on 200", req: Request{Action: "translate", Units: 40}, status: 200,
			want: Settled{Outcome: SettleKept, Charged: 50}, wantBalance: 950, wantHour: 1},
		{name: "no refund on 404", req: Request{Action: "translate", Units: 40}, status: 404,
			want: Settled{Outcome: SettleKept, Charged: 50}, wantBalance: 950, wantHour: 1},
		{name: "refund windows", req: Request{Action: "llm", Units: 100}, status: 502,
			want: Settled{Outcome: SettleRefund, Charged: 110, Refunded: 110, WindowsRefunded: true}, wantBalance: 1000, wantHour: 0},
		{name: "window refund after the window rolled", req: Request{Action: "llm", Units: 100}, status: 502, after: time.Hour,
			want: Settled{Outcome: SettleRefund, Charged: 110, Refunded: 110}, wantBalance: 1000, wantHour: 0},
		{name: "adjust up", req: Request{Action: "llm", Units: 100}, status: 200, headers: usage("300"),
			want: Settled{Outcome: SettleAdjust, Charged: 110, Extra: 200, ActualUnits: 300}, wantBalance: 690, wantHour: 1},
		{name: "adjust down", req: Request{Action: "llm", Units: 100}, status: 200, headers: usage("20"),
			want: Settled{Outcome: SettleAdjust, Charged: 110, Refunded: 80, ActualUnits: 20}, wantBalance: 970, wantHour: 1},
		{name: "actual equals estimate", req: Request{Action: "llm", Units: 100}, status: 200, headers: usage("100"),
			want: Settled{Outcome: SettleKept, Charged: 110, ActualUnits: 100}, wantBalance: 890, wantHour: 1},
		{name: "owed when the balance is short", req: Request{Subject: "poor", Action: "llm", Units: 100}, status: 200, headers: usage("500"),
			want: Settled{Outcome: SettleAdjust, Charged: 110, Extra: 400, Owed: 310, ActualUnits: 500}, wantBalance: 0, wantHour: 1},
		{name: "refund status wins over the usage header", req: Request{Action: "llm", Units: 100}, status: 500, headers: usage("500"),
			want: Settled{Outcome: SettleRefund, Charged: 110, Refunded: 110, WindowsRefunded: true}, wantBalance: 1000, wantHour: 0},
		{name: "no usage header is kept", req: Request{Action: "llm", Units: 100}, status: 200, headers: map[string]string{"x-other": "5"},
			want: Settled{Outcome: SettleKept, Charged: 110}, wantBalance: 890, wantHour: 1},
		{name: "team owner", req: Request{Subject: "mate", Action: "translate", Units: 90}, status: 503,
			want: Settled{Outcome: SettleRefund, Charged: 100, Refunded: 100, Owner: "team:crew", Team: "crew"}, wantBalance: 5000, wantHour: 1},
	}
	for _, invalid := range []string{"9223372036854775808", "9223372036854775807", "9007199254740992", "-5", "1e3", "", " 5", "5 ", "+5", "0x10", "٣", "5.0"} {
		tests = append(tests, struct {
			name                  string
			req                   Request
			after                 time.Duration
			status                int
			headers               map[string]string
			want                  Settled
			wantBalance, wantHour int64
		}{name: "invalid usage " + invalid, req: Request{Action: "llm", Units: 100}, status: 200, headers: usage(invalid),
			want: Settled{Outcome: SettleInvalid, Charged: 110}, wantBalance: 890, wantHour: 1})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := settleConfig()
			cfg.PendingMaxAge = 2 * time.Hour
			e := newEngine(t, cfg)
			req := tc.req
			if req.Subject == "" {
				req.Subject = "alice"
			}
			d := chargeAt(t, e, t0, req)
			if !d.Allowed {
				t.Fatalf("decision refused: %v", d.Reason)
			}
			got := settleAt(t, e, t0.Add(tc.after), Settlement{DecisionID: d.ID, Status: tc.status, Headers: tc.headers})
			want := tc.want
			want.DecisionID, want.Subject, want.Tier, want.Action, want.Units = d.ID, req.Subject, d.Tier, req.Action, req.Units
			want.DecidedAt = t0
			if want.Owner == "" {
				want.Owner = req.Subject
			}
			got.Balance, got.HasBalance = 0, false
			if !reflect.DeepEqual(got, want) {
				t.Errorf("settled\n got %+v\nwant %+v", got, want)
			}
			st := status(t, e, t0.Add(tc.after), req.Subject)
			if st.Balance != tc.wantBalance {
				t.Errorf("balance after: got %d, want %d", st.Balance, tc.wantBalance)
			}
			if tc.after < time.Hour {
				if used := limitUsed(t, st, "hour"); used != tc.wantHour {
					t.Errorf("hour used after: got %d, want %d", used, tc.wantHour)
				}
			}
			again := settleAt(t, e, t0.Add(tc.after+time.Second), Settlement{DecisionID: d.ID, Status: tc.status, Headers: tc.headers})
			if again.Outcome != SettleDuplicate {
				t.Errorf("settled again: got %v, want duplicate", again.Outcome)
			}
			if st2 := status(t, e, t0.Add(tc.after+time.Second), req.Subject); st2.Balance != st.Balance {
				t.Errorf("a duplicate changed the balance from %d to %d", st.Balance, st2.Balance)
			}
		})
	}
}

// TestSettleAllowanceOfAnEndedPeriod checks that a refund does not carry
// an allowance spent in a grant period that has ended into the next one,
// while credits come back whatever the period.
func TestSettleAllowanceOfAnEndedPeriod(t *testing.T) {
	cfg := settleConfig()
	cfg.Users = map[string]UserConfig{"bob": {Credits: 100}}
	cfg.PendingMaxAge = 40 * 24 * time.Hour
	e := newEngine(t, cfg)
	end := time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC)
	if _, err := e.AddCredits(context.Background(), "bob", 0); err != nil && !errors.Is(err, ErrNegativeBalance) {
		t.Fatal(err)
	}
	admitN(t, e, end, Request{Subject: "bob", Action: "translate", Units: 990}, 1)    // 1000: the whole allowance
	d := chargeAt(t, e, end, Request{Subject: "bob", Action: "translate", Units: 40}) // 50 of credits
	if !d.Allowed || d.Balance != 50 {
		t.Fatalf("second charge: allowed %v, balance %d; want allowed with 50 left", d.Allowed, d.Balance)
	}
	next := end.Add(2 * time.Minute) // April: a fresh allowance of 1000
	got := settleAt(t, e, next, Settlement{DecisionID: d.ID, Status: 503})
	if got.Outcome != SettleRefund || got.Refunded != 50 || got.Balance != 1100 {
		t.Errorf("refund in the next period: %v refunded %d balance %d; want refund 50, balance 1000+100", got.Outcome, got.Refunded, got.Balance)
	}
}

func TestSettleUnmatchedAgedOutEvicted(t *testing.T) {
	cfg := settleConfig()
	cfg.PendingSize = pendingShards * 2 // two records per part
	e := newEngine(t, cfg)
	if got := settleAt(t, e, t0, Settlement{DecisionID: newDecisionID(t0), Status: 503}); got.Outcome != SettleUnmatched {
		t.Errorf("unknown id: %v, want unmatched", got.Outcome)
	}
	if got := settleAt(t, e, t0, Settlement{DecisionID: uuid.Nil, Status: 503}); got.Outcome != SettleUnmatched {
		t.Errorf("nil id: %v, want unmatched", got.Outcome)
	}
	free := chargeAt(t, e, t0, Request{Subject: "alice", Action: "free"})
	if got := settleAt(t, e, t0, Settlement{DecisionID: free.ID, Status: 503}); got.Outcome != SettleUnmatched {
		t.Errorf("settle off: %v, want unmatched (never held)", got.Outcome)
	}
	old := chargeAt(t, e, t0, Request{Subject: "alice", Action: "translate", Units: 1})
	if got := settleAt(t, e, t0.Add(16*time.Minute), Settlement{DecisionID: old.ID, Status: 503}); got.Outcome != SettleAgedOut {
		t.Errorf("after PendingMaxAge: %v, want aged_out", got.Outcome)
	}
	if s := e.PendingStats(); s.AgedOut != 1 || s.Held != 0 {
		t.Errorf("stats after aging out: %+v, want 1 aged out, none held", s)
	}
	// Fill the table many times over: the first decisions are evicted.
	// Each charge is another caller's, so that none is refused (alice's
	// hourly limit would stop at 100, leaving some parts of the table
	// short of full: the first decision was then kept in 2% of runs).
	now := t0.Add(20 * time.Minute)
	first := chargeAt(t, e, now, Request{Subject: "alice", Action: "translate", Units: 1})
	for i := range 40 * pendingShards {
		d := chargeAt(t, e, now.Add(time.Duration(i+1)*time.Millisecond), Request{Subject: fmt.Sprintf("filler-%d", i), Action: "translate", Units: 1})
		if !d.Allowed {
			t.Fatalf("filler charge %d refused: %s", i, d.Reason)
		}
	}
	s := e.PendingStats()
	if s.Evicted == 0 || s.Held > cfg.PendingSize {
		t.Fatalf("stats after overfilling: %+v; want evictions and at most %d held", s, cfg.PendingSize)
	}
	if got := settleAt(t, e, now.Add(time.Second), Settlement{DecisionID: first.ID, Status: 503}); got.Outcome != SettleAgedOut {
		t.Errorf("evicted id: %v, want aged_out", got.Outcome)
	}
	before := status(t, e, now.Add(time.Second), "alice").Balance
	if after := status(t, e, now.Add(time.Second), "alice").Balance; after != before {
		t.Errorf("an evicted settlement changed the balance")
	}
}

func TestSettleUpwardAdjustmentEmitsBalanceLow(t *testing.T) {
	cfg := settleConfig()
	rec := &recorder{}
	cfg.Events = rec
	e := newEngine(t, cfg)
	d := chargeAt(t, e, t0, Request{Subject: "alice", Action: "llm", Units: 10}) // 20 of 1000
	if n := rec.count(EventBalanceLow); n != 0 {
		t.Fatalf("balance low before the settlement: %d events", n)
	}
	got := settleAt(t, e, t0, Settlement{DecisionID: d.ID, Status: 200, Headers: map[string]string{"x-usage-tokens": "950"}})
	if got.Outcome != SettleAdjust || got.Extra != 940 || got.Balance != 40 {
		t.Fatalf("settled %+v; want adjust with 940 extra, balance 40", got)
	}
	if n := rec.count(EventBalanceLow); n != 1 {
		t.Errorf("EventBalanceLow after the adjustment: %d events, want 1", n)
	}
}

func TestSettleRuleValidation(t *testing.T) {
	cfg := settleConfig()
	cfg.Actions["bad"] = ActionConfig{PerCall: 1, Settle: &SettleRule{RefundStatuses: []StatusRange{{600, 700}, {503, 500}}, UsageHeader: "X-Usage"}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad settle rules")
	}
	for _, want := range []string{"actions.bad.settle.refund_statuses[0]", "actions.bad.settle.refund_statuses[1]", "actions.bad.settle.usage_header", `"X-Usage"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	cfg.PendingSize, cfg.PendingMaxAge = -1, -time.Second
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pending_size") || !strings.Contains(err.Error(), "pending_max_age") {
		t.Errorf("negative pending options: %v", err)
	}
}

func TestSettleOutcomeNames(t *testing.T) {
	for o := SettleKept; o <= SettleInvalid; o++ {
		back, err := ParseSettleOutcome(o.String())
		if err != nil || back != o {
			t.Errorf("ParseSettleOutcome(%q) = %v, %v", o.String(), back, err)
		}
	}
	if _, err := ParseSettleOutcome("refunded"); err == nil {
		t.Error("ParseSettleOutcome accepted an unknown name")
	}
}

// TestSettleBeforeFlushAndAfterRestart settles one decision whose state
// was not flushed yet, and one after a restart on the same store.
func TestSettleBeforeFlushAndAfterRestart(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	cfg := settleConfig()
	cfg.Store = store
	e := newEngine(t, cfg)
	d1 := chargeAt(t, e, t0, Request{Subject: "alice", Action: "translate", Units: 40})
	d2 := chargeAt(t, e, t0, Request{Subject: "alice", Action: "translate", Units: 40})
	if got := settleAt(t, e, t0, Settlement{DecisionID: d1.ID, Status: 503}); got.Outcome != SettleRefund || got.Balance != 950 {
		t.Fatalf("before the flush: %+v", got)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, cfg)
	if n, err := e2.RestorePending(ctx); err != nil || n != 2 {
		t.Fatalf("RestorePending: %d, %v; want 2 records (one open, one settled)", n, err)
	}
	if got := settleAt(t, e2, t0.Add(time.Minute), Settlement{DecisionID: d1.ID, Status: 503}); got.Outcome != SettleDuplicate {
		t.Errorf("settled before the restart, again after it: %v, want duplicate", got.Outcome)
	}
	got := settleAt(t, e2, t0.Add(time.Minute), Settlement{DecisionID: d2.ID, Status: 503})
	if got.Outcome != SettleRefund || got.Balance != 1000 {
		t.Errorf("after the restart: %+v, want a refund to 1000", got)
	}
	if s := e2.PendingStats(); s.Held != 0 {
		t.Errorf("held after settling everything: %d", s.Held)
	}
}

// TestSettleSyncWrites checks that under SyncWrites the pending record is
// saved with the charge, and the settlement before Settle returns.
func TestSettleSyncWrites(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	cfg := settleConfig()
	cfg.Store, cfg.SyncWrites = store, true
	e := newEngine(t, cfg)
	d := chargeAt(t, e, t0, Request{Subject: "alice", Action: "translate", Units: 40})
	recs, _ := store.LoadPending(ctx, t0)
	if len(recs) != 1 || recs[0].ID != d.ID || recs[0].State != PendingOpen || recs[0].Charged != 50 || recs[0].FromAllowance != 50 {
		t.Fatalf("after a sync charge the store holds %+v", recs)
	}
	settleAt(t, e, t0, Settlement{DecisionID: d.ID, Status: 503})
	recs, _ = store.LoadPending(ctx, t0)
	if len(recs) != 1 || recs[0].State != PendingSettled {
		t.Fatalf("after a sync settlement the store holds %+v", recs)
	}
	snap, _, _ := store.Load(ctx, "alice")
	if snap.Allowance != 1000 {
		t.Errorf("stored allowance after the refund: %d, want 1000", snap.Allowance)
	}
}

// TestSettleTeamWindows refunds a team member's request in its own window
// and in the team's, and checks that an unpriced call, which no
// settlement could change, is not held.
func TestSettleTeamWindows(t *testing.T) {
	e := newEngine(t, settleConfig())
	d := chargeAt(t, e, t0, Request{Subject: "mate", Action: "llm", Units: 10})
	if used := limitUsed(t, status(t, e, t0, "team:crew"), "team:team-hour"); used != 1 {
		t.Fatalf("the team's hour after the decision: %d, want 1", used)
	}
	got := settleAt(t, e, t0.Add(time.Minute), Settlement{DecisionID: d.ID, Status: 504})
	if got.Outcome != SettleRefund || !got.WindowsRefunded || got.Owner != "team:crew" || got.Balance != 5000 {
		t.Fatalf("settled %+v; want a refund of the team's balance and windows", got)
	}
	if used := limitUsed(t, status(t, e, t0.Add(time.Minute), "mate"), "hour"); used != 0 {
		t.Errorf("mate's hour after the refund: %d, want 0", used)
	}
	if used := limitUsed(t, status(t, e, t0.Add(time.Minute), "team:crew"), "team:team-hour"); used != 0 {
		t.Errorf("the team's hour after the refund: %d, want 0", used)
	}
	plain := chargeAt(t, e, t0, Request{Subject: "alice"})
	if got := settleAt(t, e, t0, Settlement{DecisionID: plain.ID, Status: 503}); got.Outcome != SettleUnmatched {
		t.Errorf("an unpriced call: %v, want unmatched (never held)", got.Outcome)
	}
}
