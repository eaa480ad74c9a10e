package durable

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// openFile opens a state store and a ledger in one SQLite file.
func openFile(t *testing.T, path string, busy time.Duration) (*sqlite.Store, *ledger.Ledger) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{Durability: sqlite.DurabilitySync, BusyTimeout: busy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	led, err := ledger.Open(ctx, path, ledger.Options{Sync: true, BusyTimeout: busy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	return st, led
}

// newTestCommitter opens a Committer on a fresh file in t.TempDir().
func newTestCommitter(t *testing.T) (*Committer, *sqlite.Store, *ledger.Ledger) {
	t.Helper()
	st, led := openFile(t, filepath.Join(t.TempDir(), "ledger.db"), 0)
	return NewCommitter(st, led), st, led
}

func testRecord(subject string, tokens int64) *ledger.Record {
	return &ledger.Record{ID: uuid.Must(uuid.NewV7()), Time: time.Now(), Kind: ledger.KindCharge, Subject: subject,
		Cost: tokens, Charged: tokens, Allowed: true, BalanceOwner: subject}
}

// stored returns the version st holds for key, 0 for none.
func stored(t *testing.T, st *sqlite.Store, key string) uint64 {
	t.Helper()
	snap, ok, err := st.Load(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return 0
	}
	return snap.Version
}

// notYet fails unless ch stays empty for a while.
func notYet(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v) before the earlier decision committed", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestCommitOrdersDecisionsByVersion(t *testing.T) {
	c, st, led := newTestCommitter(t)
	ctx := context.Background()
	a := []engine.Snapshot{{Key: "alice", Version: 1, Credits: 9}}
	b := []engine.Snapshot{{Key: "alice", Version: 2, Credits: 8}}
	c.Defer(a)
	c.Defer(b)
	if stored(t, st, "alice") != 0 {
		t.Fatal("a deferred snapshot reached the store before its decision committed")
	}
	if snap, ok, _ := c.Load(ctx, "alice"); !ok || snap.Version != 2 {
		t.Fatalf("Load = %+v, %v; want the newest deferred snapshot (version 2)", snap, ok)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- c.Commit(ctx, b, testRecord("alice", 1)) }()
	notYet(t, bDone, "the later decision's Commit")
	if err := c.Commit(ctx, a, testRecord("alice", 1)); err != nil {
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
		t.Errorf("pending = %v after every decision committed", c.pending)
	}
}

func TestCommitWithoutRecordOrSnapshots(t *testing.T) {
	c, st, led := newTestCommitter(t)
	ctx := context.Background()
	snaps := []engine.Snapshot{{Key: "bob", Version: 3}}
	c.Defer(snaps)
	if err := c.Commit(ctx, snaps, nil); err != nil {
		t.Fatal(err)
	}
	if stored(t, st, "bob") != 3 {
		t.Error("a decision committed without a record left its state uncommitted")
	}
	// A refusal that changed no state still commits its record.
	if err := c.Commit(ctx, nil, testRecord("bob", 0)); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := led.Scan(ctx, func(ledger.Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("ledger holds %d records, want 1", n)
	}
}

// A save the engine makes itself (a flush, an eviction, an admin change)
// of a key with a deferred snapshot waits for that snapshot's decision:
// the state it writes includes that decision's charge.
func TestDirectSaveWaitsForDeferredSnapshots(t *testing.T) {
	for _, tt := range []struct {
		name    string
		version uint64
	}{
		{name: "the deferred snapshot itself", version: 4},
		{name: "a later snapshot", version: 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, st, _ := newTestCommitter(t)
			ctx := context.Background()
			charge := []engine.Snapshot{{Key: "alice", Version: 4}}
			c.Defer(charge)
			if err := c.Save(ctx, []engine.Snapshot{{Key: "carol", Version: 1}}); err != nil {
				t.Fatal(err)
			}
			if stored(t, st, "carol") != 1 {
				t.Fatal("a save of another key was not written at once")
			}
			saved := make(chan error, 1)
			go func() { saved <- c.Save(ctx, []engine.Snapshot{{Key: "alice", Version: tt.version}}) }()
			notYet(t, saved, "a direct save of a deferred key")
			if got := stored(t, st, "alice"); got != 0 {
				t.Fatalf("version %d was written before the decision that deferred version 4 committed", got)
			}
			if err := c.Commit(ctx, charge, testRecord("alice", 1)); err != nil {
				t.Fatal(err)
			}
			if err := <-saved; err != nil {
				t.Fatal(err)
			}
			if got := stored(t, st, "alice"); got != tt.version {
				t.Errorf("stored version %d, want %d", got, tt.version)
			}
		})
	}
}

// A save of an older version than a deferred one (an eviction's queued
// snapshot taken before the charge) does not wait: the decision that
// deferred the newer one may be the very caller.
func TestDirectSaveOfAnOlderVersionDoesNotWait(t *testing.T) {
	c, st, _ := newTestCommitter(t)
	ctx := context.Background()
	c.Defer([]engine.Snapshot{{Key: "alice", Version: 4}})
	if err := c.Save(ctx, []engine.Snapshot{{Key: "alice", Version: 3}}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, st, "alice"); got != 3 {
		t.Errorf("stored version %d, want 3", got)
	}
	if snap, _, _ := c.Load(ctx, "alice"); snap.Version != 4 {
		t.Errorf("Load = version %d, want the deferred 4", snap.Version)
	}
}

// failedCommit defers snaps and commits them with rec while another
// connection holds the file's write lock, so that the commit fails. It
// returns the Committer, its store and the function that releases the lock.
func failedCommit(t *testing.T, snaps []engine.Snapshot, rec *ledger.Record) (*Committer, *sqlite.Store, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st, led := openFile(t, path, 20*time.Millisecond)
	c := NewCommitter(st, led)
	unlock := holdWriteLock(t, path)
	c.Defer(snaps)
	if err := c.Commit(context.Background(), snaps, rec); err == nil {
		t.Fatal("Commit succeeded while another connection held the write lock")
	}
	return c, st, unlock
}

func TestFailedCommitIsRetriedWithTheNextSave(t *testing.T) {
	c, st, unlock := failedCommit(t, []engine.Snapshot{{Key: "dave", Version: 7, Credits: 3}}, testRecord("dave", 1))
	ctx := context.Background()
	if snap, ok, _ := c.Load(ctx, "dave"); !ok || snap.Version != 7 {
		t.Fatalf("Load after the failed commit = %+v, %v; want the uncommitted version 7", snap, ok)
	}
	if err := c.Save(ctx, []engine.Snapshot{{Key: "erin", Version: 1}}); err == nil {
		t.Fatal("Save succeeded while another connection held the write lock")
	}
	if len(c.retry) != 1 || len(c.pending) != 0 {
		t.Fatalf("retry %v, pending %v after a failed save; want dave's snapshot kept for retry only", c.retry, c.pending)
	}
	unlock()
	if err := c.Save(ctx, []engine.Snapshot{{Key: "erin", Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if stored(t, st, "dave") != 7 || stored(t, st, "erin") != 1 {
		t.Error("the next save did not carry the failed commit's snapshot")
	}
	if len(c.retry) != 0 {
		t.Errorf("retry %v after the retry succeeded; want it empty", c.retry)
	}
}

func TestFailedCommitIsRetriedWithTheNextCommit(t *testing.T) {
	c, st, unlock := failedCommit(t, []engine.Snapshot{{Key: "gus", Version: 2}}, nil)
	unlock()
	next := []engine.Snapshot{{Key: "hal", Version: 1}}
	c.Defer(next)
	if err := c.Commit(context.Background(), next, testRecord("hal", 1)); err != nil {
		t.Fatal(err)
	}
	if stored(t, st, "gus") != 2 || len(c.retry) != 0 {
		t.Errorf("gus stored at %d, retry %v; want the next commit to carry version 2", stored(t, st, "gus"), c.retry)
	}
}

func TestCloseSavesFailedCommits(t *testing.T) {
	c, st, unlock := failedCommit(t, []engine.Snapshot{{Key: "frank", Version: 2}}, nil)
	unlock()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stored(t, st, "frank") != 2 {
		t.Error("Close did not save the snapshot of a failed commit")
	}
}

// holdWriteLock takes path's write lock from another connection and
// returns the function that releases it.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil && !errors.Is(err, sql.ErrConnDone) {
			t.Fatal(err)
		}
		conn.Close()
	}
}
