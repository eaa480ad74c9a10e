package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// newTestCommitter opens a state store and a ledger in one SQLite file.
func newTestCommitter(t *testing.T) (*syncCommitter, *sqlite.Store, *ledger.Ledger) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{Durability: sqlite.DurabilitySync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	led, err := ledger.Open(ctx, path, ledger.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	return newSyncCommitter(st, led), st, led
}

func testRecord(subject string, tokens int64) *ledger.Record {
	return &ledger.Record{ID: uuid.Must(uuid.NewV7()), Time: time.Now(), Kind: ledger.KindCharge, Subject: subject,
		Cost: tokens, Charged: tokens, Allowed: true, BalanceOwner: subject}
}

func TestSyncCommitterCommitsStateWithRecord(t *testing.T) {
	c, st, led := newTestCommitter(t)
	ctx := context.Background()
	a := &commitSlot{done: make(chan struct{})}
	b := &commitSlot{done: make(chan struct{})}
	actx, bctx := context.WithValue(ctx, slotKey{}, a), context.WithValue(ctx, slotKey{}, b)
	if err := c.Save(actx, []engine.Snapshot{{Key: "alice", Version: 1, Credits: 9}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(bctx, []engine.Snapshot{{Key: "alice", Version: 2, Credits: 8}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Load(ctx, "alice"); ok {
		t.Fatal("a deferred snapshot reached the store before its Check committed")
	}
	if snap, ok, _ := c.Load(ctx, "alice"); !ok || snap.Version != 2 {
		t.Fatalf("Load = %+v, %v; want the newest deferred snapshot (version 2)", snap, ok)
	}
	c.mu.Lock()
	wait := c.earlierLocked(b)
	c.mu.Unlock()
	if wait != a.done {
		t.Fatal("the later snapshot does not wait for the earlier Check's commit")
	}
	bDone := make(chan error, 1)
	go func() { bDone <- c.commit(bctx, b, testRecord("alice", 1)) }()
	if err := c.commit(actx, a, testRecord("alice", 1)); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if snap, ok, _ := st.Load(ctx, "alice"); !ok || snap.Version != 2 || snap.Credits != 8 {
		t.Errorf("stored = %+v, %v; want version 2", snap, ok)
	}
	charged, err := led.ChargedByOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if charged["alice"] != 2 {
		t.Errorf("ledger charged alice %d, want 2 (both records, with their state)", charged["alice"])
	}
	if len(c.pending) != 0 {
		t.Errorf("pending = %v after every Check committed", c.pending)
	}
}

func TestSyncCommitterSafetyNetAndDirectSaves(t *testing.T) {
	c, st, _ := newTestCommitter(t)
	ctx := context.Background()
	c.within(ctx, func(ctx context.Context) {
		if err := c.Save(ctx, []engine.Snapshot{{Key: "bob", Version: 3}}); err != nil {
			t.Fatal(err)
		}
	})
	if snap, ok, _ := st.Load(ctx, "bob"); !ok || snap.Version != 3 {
		t.Errorf("a Check without Observe left its state uncommitted: %+v, %v", snap, ok)
	}
	if err := c.Save(ctx, []engine.Snapshot{{Key: "carol", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Load(ctx, "carol"); !ok {
		t.Error("a save outside any Check (a flush) was not written at once")
	}
}
