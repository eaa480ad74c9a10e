package ledger

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// crash closes l's database without folding its pending rollups, as a
// killed process would leave it.
func crash(l *Ledger) {
	l.closeOnce.Do(func() { l.closeErr = l.db.Close() })
}

// appendInTx appends recs through AppendTx in a transaction of its own,
// as the sync committer does in a transaction it shares with the state.
func appendInTx(ctx context.Context, t *testing.T, l *Ledger, recs []Record) {
	t.Helper()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendTx(ctx, tx, recs); err != nil {
		tx.Rollback()
		t.Fatalf("AppendTx: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// checkUsage compares every grain's Usage of l with the records'.
func checkUsage(ctx context.Context, t *testing.T, l *Ledger, recs []Record) {
	t.Helper()
	for _, by := range grains {
		q := Query{From: t0.AddDate(0, -1, 0), To: t0.AddDate(0, 2, 0), By: by}
		got, err := l.Usage(ctx, q)
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if want := expectedUsage(recs, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("Usage by %s =\n%+v\nwant\n%+v", by, got, want)
		}
		subj := q
		subj.Subject = "alice"
		got, err = l.Usage(ctx, subj)
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if want := expectedUsage(recs, subj); !reflect.DeepEqual(got, want) {
			t.Fatalf("Usage of alice by %s =\n%+v\nwant\n%+v", by, got, want)
		}
	}
}

// TestFoldSurvivesCrash appends, folds some of the rollups, "crashes"
// without folding the rest, reopens, and checks that the reports count
// every record exactly once.
func TestFoldSurvivesCrash(t *testing.T) {
	// Steps: "append" and "tx" append the next third of the records with
	// Append or AppendTx; "fold" folds.
	tests := []struct {
		name  string
		steps []string
	}{
		{name: "never folded", steps: []string{"append", "append", "append"}},
		{name: "folded then more", steps: []string{"append", "fold", "append", "append"}},
		{name: "all folded", steps: []string{"append", "append", "append", "fold"}},
		{name: "AppendTx in between", steps: []string{"append", "tx", "append"}},
		{name: "AppendTx folded", steps: []string{"tx", "fold", "append", "tx"}},
	}
	backends(t, func(t *testing.T, dsn func() string) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				d := dsn()
				recs := usageRecords()
				l := openLedger(t, d)
				part := 0
				for _, s := range tc.steps {
					if s == "fold" {
						if err := l.FoldRollups(ctx); err != nil {
							t.Fatalf("FoldRollups: %v", err)
						}
						continue
					}
					chunk := append([]Record(nil), recs[part*len(recs)/3:(part+1)*len(recs)/3]...)
					part++
					if s == "tx" {
						appendInTx(ctx, t, l, chunk)
					} else if err := l.Append(ctx, chunk); err != nil {
						t.Fatalf("Append: %v", err)
					}
				}
				crash(l)
				l = openLedger(t, d)
				checkUsage(ctx, t, l, recs)
				// Reports folded already; reopening changes nothing.
				crash(l)
				checkUsage(ctx, t, openLedger(t, d), recs)
			})
		}
	})
}

// TestFoldConcurrentLedgers appends and folds from two handles on one
// database, as two replicas (or the server and the usage command) would:
// each record is counted once.
func TestFoldConcurrentLedgers(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		d := dsn()
		ls := []*Ledger{openLedger(t, d), openLedger(t, d)}
		recs := usageRecords()
		done := make(chan error, len(recs))
		for i := range recs {
			go func() {
				l := ls[i%2]
				err := l.Append(ctx, []Record{recs[i]})
				if err == nil && i%3 == 0 {
					err = l.FoldRollups(ctx)
				}
				done <- err
			}()
		}
		for range recs {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		checkUsage(ctx, t, ls[0], recs)
		checkUsage(ctx, t, ls[1], recs)
	})
}

// TestFoldMigratesOldLedger opens a ledger written before the watermark
// existed, whose rollups are complete: the migration must not fold its
// records a second time.
func TestFoldMigratesOldLedger(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		d := dsn()
		recs := usageRecords()
		l := openLedger(t, d)
		if err := l.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if err := l.FoldRollups(ctx); err != nil {
			t.Fatal(err)
		}
		var drops []string
		for _, table := range []string{"usage_subject", "usage_total"} {
			for _, col := range []string{"refunded", "extra", "owed"} { // migration 3
				drops = append(drops, `ALTER TABLE `+table+` DROP COLUMN `+col)
			}
		}
		for _, q := range append(drops,
			`ALTER TABLE ledger_chain DROP COLUMN rollup_seq`,
			`DELETE FROM ledger_migrations WHERE version > 1`,
		) {
			if _, err := l.db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		crash(l)
		checkUsage(ctx, t, openLedger(t, d), recs)
	})
}

// TestWriterFoldsEveryInterval checks that Run folds on its ticks once
// RollupEvery has passed on the Writer's clock, without any report.
func TestWriterFoldsEveryInterval(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t, t.TempDir()+"/ledger.db")
	now := t0
	w := NewWriter(l, WriterOptions{Now: func() time.Time { return now }})
	recs := usageRecords()
	for _, r := range recs {
		w.Append(r)
	}
	var b batch
	w.fill(&b)
	if err := w.write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	mark := func() (n int64) {
		if err := l.db.QueryRowContext(ctx, `SELECT rollup_seq FROM ledger_chain`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	w.foldIfDue(ctx)
	if got := mark(); got != 0 {
		t.Fatalf("folded to %d before RollupInterval passed", got)
	}
	now = now.Add(RollupInterval)
	w.foldIfDue(ctx)
	if got := mark(); got != int64(len(recs)) {
		t.Fatalf("folded to %d after RollupInterval, want %d", got, len(recs))
	}
}
