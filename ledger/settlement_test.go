package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// settledRecord is the ledger record of a settlement of c made at at.
func settledRecord(t *testing.T, c Record, at time.Time, out engine.SettleOutcome, actual, refunded, extra, owed int64) Record {
	t.Helper()
	s := engine.Settled{Outcome: out, DecisionID: c.ID, DecidedAt: c.Time, Subject: c.Subject, Team: c.Team, Owner: c.BalanceOwner,
		Tier: engine.Tier(c.Tier), Action: c.Action, Units: c.Units, ActualUnits: actual, Charged: c.Charged,
		Refunded: refunded, Extra: extra, Owed: owed, HasBalance: true}
	r, ok, err := FromSettled(&s, 200, "", at)
	if err != nil || !ok {
		t.Fatalf("FromSettled(%v): %v, %v", out, ok, err)
	}
	return r
}

func TestSettlementsInUsageAndBilling(t *testing.T) {
	// Three charges in the hour of t0, settled in the next hour (and the
	// next day for one): usage counts them in the hour they were decided.
	a := charge("alice", "ops", "standard", "translate", t0.Add(time.Minute), true, 100, 10)
	b := charge("alice", "ops", "standard", "translate", t0.Add(2*time.Minute), true, 100, 10)
	c := charge("alice", "ops", "standard", "translate", t0.Add(3*time.Minute), true, 100, 10)
	later := t0.Add(90 * time.Minute)
	recs := []Record{a, b, c,
		settledRecord(t, a, later, engine.SettleRefund, 0, 10, 0, 0),
		settledRecord(t, b, later, engine.SettleAdjust, 40, 6, 0, 0),
		settledRecord(t, c, t0.Add(25*time.Hour), engine.SettleAdjust, 500, 0, 40, 15),
	}
	for _, out := range []engine.SettleOutcome{engine.SettleKept, engine.SettleDuplicate, engine.SettleUnmatched, engine.SettleAgedOut, engine.SettleInvalid} {
		s := engine.Settled{Outcome: out}
		if _, ok, err := FromSettled(&s, 200, "", later); ok || err != nil {
			t.Errorf("FromSettled(%v) = %v, %v; want no record", out, ok, err)
		}
	}
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		for _, batch := range [][]Record{recs[:3], recs[3:5], recs[5:]} {
			if err := l.Append(ctx, append([]Record(nil), batch...)); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		rows, err := l.Usage(ctx, Query{Subject: "alice", From: t0, To: t0.Add(48 * time.Hour), By: GrainHour})
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		// Tokens: 10+10+10 charged, -10 refunded, -6 adjusted down, +40-15 paid up.
		// Units: 300 estimated, adjusted to 100 + 40 + 500.
		want := Row{Period: GrainHour.Start(t0), Calls: 3, Units: 640, Tokens: 39, Refunded: 16, Extra: 40, Owed: 15}
		if len(rows) != 1 || rows[0] != want {
			t.Fatalf("Usage = %+v, want [%+v]", rows, want)
		}
		totals, err := l.Usage(ctx, Query{From: t0, To: t0.Add(48 * time.Hour), By: GrainMonth})
		if err != nil || len(totals) != 1 || totals[0].Tokens != 39 || totals[0].Owed != 15 || totals[0].Refunded != 16 {
			t.Fatalf("Usage of all = %+v, %v", totals, err)
		}
		bill, err := l.Billing(ctx, Query{From: t0, To: t0.Add(48 * time.Hour), By: GrainDay}, map[string]float64{"standard": 0.5})
		if err != nil {
			t.Fatalf("Billing: %v", err)
		}
		if len(bill) != 1 || bill[0].Tokens != 39 || bill[0].Refunded != 16 || bill[0].Extra != 40 || bill[0].Owed != 15 ||
			bill[0].Amount != 19.5 || bill[0].OwedAmount != 7.5 {
			t.Fatalf("Billing = %+v", bill)
		}
		charged, err := l.ChargedByOwner(ctx)
		if err != nil || charged["alice"] != 39 {
			t.Fatalf("ChargedByOwner = %v, %v; want alice 39", charged, err)
		}
		if res, err := l.Verify(ctx); err != nil || !res.OK {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
		got, ok, err := l.Find(ctx, recs[3].ID)
		if err != nil || !ok || got.Settlement == nil || got.Settlement.Settles != a.ID || got.Kind != KindSettlement {
			t.Fatalf("Find(settlement) = %+v, %v, %v", got, ok, err)
		}
	})
}

func TestSpillKeepsSettledUsage(t *testing.T) {
	a := charge("bob", "", "standard", "translate", t0, true, 100, 10)
	s := settledRecord(t, a, t0.Add(2*time.Hour), engine.SettleAdjust, 20, 8, 0, 0)
	var sp spill
	sp.m = map[spillKey]*Spill{}
	sp.add(a)
	sp.add(s)
	out := sp.take()
	if len(out) != 1 || out[0].Spill == nil {
		t.Fatalf("spill = %+v, want one record", out)
	}
	got := out[0].Spill
	if got.Records != 2 || got.Calls != 1 || got.Units != 20 || got.Tokens != 2 || got.Refunded != 8 || !out[0].Time.Equal(t0) {
		t.Fatalf("spill = %+v at %s, want 2 records, 1 call, 20 units, 2 tokens, 8 refunded at %s", got, out[0].Time, t0)
	}
}
