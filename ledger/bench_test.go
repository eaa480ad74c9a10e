package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// benchLedger is a SQLite ledger holding a month of history for 10 000
// subjects (one charge per subject per day, at a subject-dependent hour),
// written through Append like the batcher does. It is built once per
// test binary run.
var benchLedger struct {
	once sync.Once
	dir  string
	l    *Ledger
	err  error
}

const (
	benchSubjects = 10000
	benchDays     = 30
)

var benchStart = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

func monthOfHistory(b *testing.B) *Ledger {
	benchLedger.once.Do(func() {
		dir, err := os.MkdirTemp("", "quotagate-ledger-bench-*")
		benchLedger.dir = dir
		if err != nil {
			benchLedger.err = err
			return
		}
		ctx := context.Background()
		l, err := Open(ctx, filepath.Join(dir, "bench.db"), Options{})
		if err != nil {
			benchLedger.err = err
			return
		}
		batch := make([]Record, 0, 4096)
		flush := func() error {
			err := l.Append(ctx, batch)
			batch = batch[:0]
			return err
		}
		for day := range benchDays {
			for s := range benchSubjects {
				at := benchStart.AddDate(0, 0, day).Add(time.Duration(s%24)*time.Hour + time.Duration(s%60)*time.Minute)
				tier := [...]string{"freemium", "standard", "enterprise"}[s%3]
				batch = append(batch, charge(fmt.Sprintf("user-%05d", s), fmt.Sprintf("team-%d", s%50), tier,
					"translate", at, s%7 != 0, int64(s%500), int64(s%100+1)))
				if len(batch) == cap(batch) {
					if benchLedger.err = flush(); benchLedger.err != nil {
						return
					}
				}
			}
		}
		if benchLedger.err = flush(); benchLedger.err != nil {
			return
		}
		// Fold now, as a running Writer would have: the reports then
		// measure reading the rollups, not the last fold.
		if benchLedger.err = l.FoldRollups(ctx); benchLedger.err == nil {
			benchLedger.l = l
		}
	})
	if benchLedger.err != nil {
		b.Fatal(benchLedger.err)
	}
	return benchLedger.l
}

// BenchmarkReportMonth10kSubjects answers a month of reports over 10 000
// subjects; each op is one report.
func BenchmarkReportMonth10kSubjects(b *testing.B) {
	l := monthOfHistory(b)
	ctx := context.Background()
	month := Query{From: benchStart, To: benchStart.AddDate(0, 1, 0)}
	q := func(mod func(*Query)) Query { c := month; mod(&c); return c }
	usage := []struct {
		name string
		q    Query
	}{
		{name: "usage/all/hour", q: q(func(q *Query) { q.By = GrainHour })},
		{name: "usage/all/day", q: q(func(q *Query) { q.By = GrainDay })},
		{name: "usage/all/month", q: q(func(q *Query) { q.By = GrainMonth })},
		{name: "usage/team/day", q: q(func(q *Query) { q.Team, q.By = "team-7", GrainDay })},
		{name: "usage/tier/hour", q: q(func(q *Query) { q.Tier, q.By = "standard", GrainHour })},
		{name: "usage/subject/hour", q: q(func(q *Query) { q.Subject, q.By = "user-04242", GrainHour })},
	}
	for _, tc := range usage {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rows, err := l.Usage(ctx, tc.q)
				if err != nil || len(rows) == 0 {
					b.Fatalf("Usage = %d rows, %v", len(rows), err)
				}
			}
		})
	}
	prices := map[string]float64{"freemium": 0, "standard": 0.002, "enterprise": 0.001}
	b.Run("billing/all-subjects/month", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rows, err := l.Billing(ctx, q(func(q *Query) { q.By = GrainMonth }), prices)
			// Every 7th subject is always refused, so is never billed.
			if want := benchSubjects - (benchSubjects+6)/7; err != nil || len(rows) != want {
				b.Fatalf("Billing = %d rows, %v; want %d", len(rows), err, want)
			}
		}
	})
}

// BenchmarkAppend measures the batcher's cost per record: one op is one
// record, written in batches of 1024 (hash chain, insert, rollups), with
// records spread over a given number of subjects.
func BenchmarkAppend(b *testing.B) {
	for _, subjects := range []int{100, 10000} {
		b.Run(fmt.Sprintf("subjects=%d", subjects), func(b *testing.B) {
			l := openLedger(b, filepath.Join(b.TempDir(), "l.db"))
			ctx := context.Background()
			batch := make([]Record, 0, 1024)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				batch = append(batch, charge(fmt.Sprintf("user-%d", i%subjects), "ops", "standard", "translate",
					benchStart.Add(time.Duration(i)*time.Millisecond), true, 120, 3))
				i++
				if len(batch) == cap(batch) {
					if err := l.Append(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
		})
	}
}

// BenchmarkWriterAppend is the Check path's cost: queueing one record.
func BenchmarkWriterAppend(b *testing.B) {
	l := openLedger(b, filepath.Join(b.TempDir(), "l.db"))
	w := NewWriter(l, WriterOptions{})
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() { // stands in for Run, without the database
		defer close(drained)
		var out []Record
		for {
			select {
			case <-stop:
				return
			default:
			}
			out = w.queue.take(out[:0], 4096)
			if len(out) == 0 {
				runtime.Gosched()
			}
		}
	}()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := charge("alice", "ops", "standard", "translate", benchStart, true, 120, 3)
		for pb.Next() {
			r.ID = uuid.UUID{}
			w.Append(r)
		}
	})
	b.StopTimer()
	close(stop)
	<-drained
	b.ReportMetric(float64(w.Stats().Overflowed)/float64(b.N), "overflowed/op")
}

// BenchmarkWriterRun is the whole ledger path as the server runs it, at
// overload: the Check goroutines Append as fast as they can, Run batches
// into SQLite in the background, and the clock stops after the final
// Flush, so ns/op includes the batcher's work. The share of records that
// overflowed into spill summaries is reported.
func BenchmarkWriterRun(b *testing.B) {
	l := openLedger(b, filepath.Join(b.TempDir(), "l.db"))
	w := NewWriter(l, WriterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			at := benchStart.Add(time.Duration(i) * time.Millisecond)
			w.Append(charge(fmt.Sprintf("user-%d", i%1000), "ops", "standard", "translate", at, i%10 != 0, 120, 3))
		}
	})
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(w.Stats().Overflowed)/float64(b.N), "overflowed/op")
}

// BenchmarkFold is the periodic fold as the server runs it under the load
// benchmark: one op appends 50 000 records spread uniformly over 10 000
// subjects (a few seconds of load) and folds them into the rollups.
func BenchmarkFold(b *testing.B) {
	l := openLedger(b, filepath.Join(b.TempDir(), "l.db"))
	ctx := context.Background()
	const subjects, perFold = 10000, 50000
	names := make([]string, subjects)
	for i := range names {
		names[i] = fmt.Sprintf("user-%05d", i)
	}
	batch := make([]Record, 0, 1000)
	at := benchStart
	var folds time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for i := range perFold {
			at = at.Add(100 * time.Microsecond)
			batch = append(batch, charge(names[(i*7919)%subjects], "ops", "standard", "translate", at, true, 120, 3))
			if len(batch) == cap(batch) {
				if err := l.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		start := cpuTime(b)
		if err := l.FoldRollups(ctx); err != nil {
			b.Fatal(err)
		}
		folds += cpuTime(b) - start
	}
	// CPU time rather than wall time: other jobs on the machine do not
	// count, and the fold is one goroutine's work.
	b.ReportMetric(float64(folds.Nanoseconds())/float64(b.N), "fold-cpu-ns/op")
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
