package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// settleEngine is an engine on store that prices "translate" at 10 per
// call plus one per unit, with a grant of 1000 tokens a month, and a
// clock fixed at now.
func settleEngine(t *testing.T, store *Store, now time.Time, sync bool) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{"standard": {Priority: engine.PriorityMedium,
			Limits: []engine.LimitConfig{{Name: "hour", Period: engine.Period{Calendar: "hour", Every: time.Hour}, Max: 100}},
			Tokens: engine.TokenGrant{Amount: 1000, Period: engine.Period{Calendar: "month", Every: 30 * 24 * time.Hour}}}},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: 10, PerThousand: 1000}},
	}, engine.Options{
		Store:      store,
		SyncWrites: sync,
		Now:        func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.RestorePending(context.Background()); err != nil {
		t.Fatalf("RestorePending: %v", err)
	}
	return e
}

// TestSettleAcrossRestart decides, restarts (a graceful one: a final
// flush, then close) and settles on the new engine: the refund applies
// once, to the state saved before the restart, and a decision settled
// before the restart is a duplicate after it. Under sync durability the
// pending record is committed with the charge, with no flush at all.
func TestSettleAcrossRestart(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, d := range []Durability{DurabilityBatch, DurabilitySync} {
		t.Run(d.String(), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			s, err := Open(ctx, path, Options{Durability: d})
			if err != nil {
				t.Fatal(err)
			}
			sync := d == DurabilitySync
			e := settleEngine(t, s, t0, sync)
			d1, _ := e.ChargeAt(ctx, t0, engine.Request{Subject: "alice", Action: "translate", Units: 40})
			d2, _ := e.ChargeAt(ctx, t0, engine.Request{Subject: "alice", Action: "translate", Units: 90})
			if !d1.Allowed || !d2.Allowed || d2.Balance != 850 {
				t.Fatalf("decisions: %v %v, balance %d", d1.Allowed, d2.Allowed, d2.Balance)
			}
			if r, err := e.SettleAt(ctx, engine.Settlement{DecisionID: d1.ID, Status: 503}, t0); err != nil || r.Outcome != engine.SettleRefund {
				t.Fatalf("settle before the restart: %v, %v", r.Outcome, err)
			}
			if !sync {
				if err := e.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s2, err := Open(ctx, path, Options{Durability: d})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			later := t0.Add(5 * time.Minute)
			e2 := settleEngine(t, s2, later, sync)
			if r, _ := e2.SettleAt(ctx, engine.Settlement{DecisionID: d1.ID, Status: 503}, later); r.Outcome != engine.SettleDuplicate {
				t.Errorf("settled before the restart, again after: %v, want duplicate", r.Outcome)
			}
			r, err := e2.SettleAt(ctx, engine.Settlement{DecisionID: d2.ID, Status: 500}, later)
			if err != nil || r.Outcome != engine.SettleRefund || r.Refunded != 100 || r.Balance != 1000 {
				t.Fatalf("settle after the restart: %+v, %v; want a refund of 100 to 1000", r, err)
			}
			if r, _ := e2.SettleAt(ctx, engine.Settlement{DecisionID: d2.ID, Status: 500}, later); r.Outcome != engine.SettleDuplicate {
				t.Errorf("resent after the restart: %v, want duplicate", r.Outcome)
			}
			st, err := e2.StatusAt(ctx, later, "alice")
			if err != nil || st.Balance != 1000 {
				t.Errorf("balance after: %d, %v; want 1000", st.Balance, err)
			}
		})
	}
}

// TestSettleAfterCrashInBatchMode loses the charge and its pending record
// together: with no flush before the crash, the entry after it is
// unmatched and the balance is whole, as the charge was never saved.
func TestSettleAfterCrashInBatchMode(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := settleEngine(t, s, t0, false)
	d, _ := e.ChargeAt(ctx, t0, engine.Request{Subject: "alice", Action: "translate", Units: 40})
	s.Close() // no flush: a crash
	s2, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e2 := settleEngine(t, s2, t0, false)
	if r, _ := e2.SettleAt(ctx, engine.Settlement{DecisionID: d.ID, Status: 503}, t0); r.Outcome != engine.SettleUnmatched {
		t.Errorf("after a crash: %v, want unmatched", r.Outcome)
	}
	if st, _ := e2.StatusAt(ctx, t0, "alice"); st.Balance != 1000 {
		t.Errorf("balance after a crash: %d, want 1000 (the charge was lost with its record)", st.Balance)
	}
}
