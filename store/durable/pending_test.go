package durable

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
)

// pendingRules price "translate" at 10 tokens a call, settled by the
// default rule (refund on 5xx), against 100 starting credits.
func pendingRules() engine.Rules {
	return engine.Rules{
		Tiers:   map[engine.Tier]engine.TierConfig{"standard": {Priority: engine.PriorityMedium}},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: 10}},
		Users:   map[string]engine.UserConfig{"ann": {Credits: 100}},
	}
}

var pendingT0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// syncEngine is an engine in durability sync on c, as cmd/quotagate wires
// it, with its pending records restored.
func syncEngine(t *testing.T, c *Committer) *engine.Engine {
	t.Helper()
	eng, err := engine.New(pendingRules(), engine.Options{Store: c, Deferrer: c, SyncWrites: true,
		Now: func() time.Time { return pendingT0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.RestorePending(context.Background()); err != nil {
		t.Fatalf("RestorePending: %v", err)
	}
	return eng
}

// pendingIDs returns the ids of the pending records stored in c's file.
func pendingIDs(t *testing.T, c *Committer) map[uuid.UUID]engine.PendingState {
	t.Helper()
	recs, err := c.LoadPending(context.Background(), pendingT0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]engine.PendingState{}
	for _, r := range recs {
		out[r.ID] = r.State
	}
	return out
}

// TestPendingRecordCommittedWithTheCharge checks that in durability sync
// a charge's pending record is written by the Commit of its snapshots and
// ledger record, in their transaction, and not before: a crash before
// the commit loses the charge and its record together, one after it
// keeps both, so a settlement after a restart refunds exactly once. The
// settlement's state and settled mark are committed the same way
// (Settled.Unsaved).
func TestPendingRecordCommittedWithTheCharge(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st, led := openFile(t, path, 0)
	c := NewCommitter(st, led)
	eng := syncEngine(t, c)
	d, err := eng.Charge(ctx, engine.Request{Subject: "ann", Action: "translate"})
	if err != nil || !d.Allowed || len(d.Unsaved) == 0 {
		t.Fatalf("Charge = %+v, %v; want an allowed decision with unsaved snapshots", d, err)
	}
	if ids := pendingIDs(t, c); len(ids) != 0 {
		t.Fatalf("pending records %v stored before the commit", ids)
	}
	rec := ledger.FromDecision(&d, "", pendingT0)
	if err := c.Commit(ctx, d.Unsaved, &rec); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, c); ids[d.ID] != engine.PendingOpen || len(ids) != 1 {
		t.Fatalf("pending records %v after the commit; want %s open", ids, d.ID)
	}
	// A restart: a new Committer and engine on the same file.
	c2 := NewCommitter(st, led)
	eng2 := syncEngine(t, c2)
	res, err := eng2.Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: 503})
	if err != nil || res.Outcome != engine.SettleRefund || len(res.Unsaved) == 0 {
		t.Fatalf("Settle = %+v, %v; want a refund with unsaved snapshots", res, err)
	}
	if ids := pendingIDs(t, c2); ids[d.ID] != engine.PendingOpen {
		t.Fatalf("pending records %v before the settlement's commit; want %s still open", ids, d.ID)
	}
	if err := c2.Commit(ctx, res.Unsaved, nil); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, c2); ids[d.ID] != engine.PendingSettled {
		t.Fatalf("pending records %v after the settlement's commit; want %s settled", ids, d.ID)
	}
	if snap, ok, err := st.Load(ctx, "ann"); err != nil || !ok || snap.Credits != 100 {
		t.Fatalf("stored state after the settlement's commit = %+v, %v, %v; want 100 credits", snap, ok, err)
	}
	if res, err := eng2.Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: 503}); err != nil ||
		res.Outcome != engine.SettleDuplicate || res.Unsaved != nil {
		t.Fatalf("second Settle = %+v, %v; want a duplicate with nothing to commit", res, err)
	}
	if s, err := eng2.Status(ctx, "ann"); err != nil || s.Balance != 100 {
		t.Fatalf("balance after the refund = %d, %v; want 100", s.Balance, err)
	}
}

// TestFailedCommitRetriesThePendingRecord checks that a pending record
// whose commit failed is kept and written by the next save, as the
// commit's snapshots are.
func TestFailedCommitRetriesThePendingRecord(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st, led := openFile(t, path, 20*time.Millisecond)
	c := NewCommitter(st, led)
	eng := syncEngine(t, c)
	d, err := eng.Charge(ctx, engine.Request{Subject: "ann", Action: "translate"})
	if err != nil || !d.Allowed {
		t.Fatalf("Charge = %+v, %v", d, err)
	}
	unlock := holdWriteLock(t, path)
	rec := ledger.FromDecision(&d, "", pendingT0)
	if err := c.Commit(ctx, d.Unsaved, &rec); err == nil {
		t.Fatal("Commit succeeded while another connection held the write lock")
	}
	unlock()
	if len(c.retryPend) != 1 {
		t.Fatalf("retryPend = %v after the failed commit; want the decision's record", c.retryPend)
	}
	if err := c.Save(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, c); ids[d.ID] != engine.PendingOpen {
		t.Fatalf("pending records %v after the retry; want %s open", ids, d.ID)
	}
	if len(c.retryPend) != 0 {
		t.Errorf("retryPend = %v after the retry succeeded; want it empty", c.retryPend)
	}
}
