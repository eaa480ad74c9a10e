package ledger

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestWriterOverflowLosesNothing fills a tiny queue and proves the design:
// the overflow is counted and logged once, and after a flush the charged
// tokens per owner and the usage totals equal those of every record
// appended, queued or not.
func TestWriterOverflowLosesNothing(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		var logs bytes.Buffer
		w := NewWriter(l, WriterOptions{
			QueueSize: 4,
			Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
			Now:       func() time.Time { return t0 },
		})
		var recs []Record
		for i := range 50 {
			recs = append(recs, charge(fmt.Sprintf("user-%d", i%3), "ops", "standard", "translate",
				t0.Add(time.Duration(i)*7*time.Minute), i%5 != 0, int64(i), int64(i+1)))
		}
		admin, err := NewAdminChange(t0, "ops-admin", "user-1", "credits", "0", "500")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, admin)
		queued := 0
		for _, r := range recs {
			if w.Append(r) {
				queued++
			}
		}
		st := w.Stats()
		if queued != 4 || st.Appended != 4 || st.Overflowed != int64(len(recs)-4) {
			t.Fatalf("queued %d, stats %+v; want 4 queued and %d overflowed", queued, st, len(recs)-4)
		}
		if n := strings.Count(logs.String(), "queue full"); n != 1 {
			t.Errorf("logged %d overflow lines, want 1 (rate limited):\n%s", n, logs.String())
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}

		wantCharged := map[string]int64{}
		for _, r := range recs {
			if r.Kind == KindCharge {
				wantCharged[r.BalanceOwner] += r.Charged
			}
		}
		gotCharged, err := l.ChargedByOwner(ctx)
		if err != nil || !reflect.DeepEqual(gotCharged, wantCharged) {
			t.Fatalf("ChargedByOwner = %v, %v; want %v", gotCharged, err, wantCharged)
		}
		for _, by := range grains {
			q := Query{From: t0, To: t0.Add(24 * time.Hour), By: by}
			got, err := l.Usage(ctx, q)
			if err != nil {
				t.Fatalf("Usage: %v", err)
			}
			if want := expectedUsage(recs, q); !reflect.DeepEqual(got, want) {
				t.Fatalf("Usage by %s =\n%+v\nwant\n%+v", by, got, want)
			}
		}
		var admins int
		err = l.Scan(ctx, func(r Record) bool {
			if r.Kind == KindAdmin {
				admins++
			}
			return true
		})
		if err != nil || admins != 1 {
			t.Fatalf("admin records = %d, %v; want the overflowed admin record kept whole", admins, err)
		}
		if res, err := l.Verify(ctx); err != nil || !res.OK {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
	})
}

func TestWriterRunDrainsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := openLedger(t, filepath.Join(t.TempDir(), "l.db"))
	w := NewWriter(l, WriterOptions{BatchSize: 16})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	recs := someRecords(300)
	for _, r := range recs {
		if !w.Append(r) {
			t.Fatal("Append overflowed a large queue")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	res, err := l.Verify(context.Background())
	if err != nil || !res.OK || res.Records != 300 {
		t.Fatalf("Verify = %+v, %v; want 300 records", res, err)
	}
	if st := w.Stats(); st.Written != 300 || st.Queued != 0 {
		t.Fatalf("Stats = %+v, want 300 written, none queued", st)
	}
}

// TestWriterRetriesFailedWrite makes the database refuse inserts, then
// accept them again: the records of the failed batch are written once.
func TestWriterRetriesFailedWrite(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t, filepath.Join(t.TempDir(), "l.db"))
	mustExec(t, l, `CREATE TABLE fail_switch (on_ INTEGER)`, `INSERT INTO fail_switch VALUES (1)`,
		`CREATE TRIGGER fail_insert BEFORE INSERT ON ledger_blocks
		 WHEN (SELECT COUNT(*) FROM fail_switch) > 0 BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
	w := NewWriter(l, WriterOptions{})
	for _, r := range someRecords(10) {
		w.Append(r)
	}
	if err := w.Flush(ctx); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Flush with failing inserts = %v, want the injected failure", err)
	}
	if st := w.Stats(); st.WriteErrors != 1 || st.Written != 0 {
		t.Fatalf("Stats = %+v, want 1 write error, nothing written", st)
	}
	mustExec(t, l, `DELETE FROM fail_switch`)
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush after recovery: %v", err)
	}
	res, err := l.Verify(ctx)
	if err != nil || !res.OK || res.Records != 10 {
		t.Fatalf("Verify = %+v, %v; want 10 records written once", res, err)
	}
}

func TestWriterRetention(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t, filepath.Join(t.TempDir(), "l.db"))
	now := t0.Add(10 * time.Hour)
	w := NewWriter(l, WriterOptions{Retention: 3 * time.Hour, Now: func() time.Time { return now }})
	recs := make([]Record, 10)
	for i := range recs {
		recs[i] = charge("alice", "", "standard", "", t0.Add(time.Duration(i)*time.Hour), true, 1, 1)
	}
	for i := range recs {
		if err := l.Append(ctx, recs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	w.writeMu.Lock()
	w.pruneIfDue(ctx)
	w.writeMu.Unlock()
	res, err := l.Verify(ctx)
	if err != nil || !res.OK || res.FirstSeq != 8 || res.Records != 3 {
		t.Fatalf("Verify after retention = %+v, %v; want the 3 records of the last 3 hours", res, err)
	}
}

func mustExec(t *testing.T, l *Ledger, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := l.db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestAppendWaitGroupCommit holds the batcher while AppendWait calls
// queue up: once released, it must commit them all in one transaction
// (one block) and answer every call.
func TestAppendWaitGroupCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := openLedger(t, filepath.Join(t.TempDir(), "l.db"))
	w := NewWriter(l, WriterOptions{})
	w.writeMu.Lock()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	const callers = 16
	errs := make(chan error, callers)
	for _, r := range someRecords(callers) {
		go func() { errs <- w.AppendWait(ctx, r) }()
	}
	// Run takes one call and waits for the lock; the others queue.
	for len(w.waits) != callers-1 {
		runtime.Gosched()
	}
	w.writeMu.Unlock()
	for range callers {
		if err := <-errs; err != nil {
			t.Fatalf("AppendWait: %v", err)
		}
	}
	var blocks int
	if err := l.db.QueryRow(`SELECT COUNT(*) FROM ledger_blocks`).Scan(&blocks); err != nil || blocks != 1 {
		t.Fatalf("blocks = %d, %v; want the %d records in 1 transaction", blocks, err, callers)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res, err := l.Verify(context.Background()); err != nil || !res.OK || res.Records != callers {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}
