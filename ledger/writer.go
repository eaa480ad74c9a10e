package ledger

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// WriterOptions configures a Writer. The zero value of each field means
// its documented default.
type WriterOptions struct {
	// QueueSize bounds the records waiting to be written. Zero means 65 536.
	QueueSize int
	// BatchSize bounds the records written per transaction; a full
	// batch's worth in the queue is written at once. Zero means 4096.
	BatchSize int
	// FlushInterval is how often queued records are written when fewer
	// than BatchSize wait (a crash loses at most this much of the ledger
	// in the default mode), and how often a failed write is retried. Zero
	// means 100 ms.
	FlushInterval time.Duration
	// RollupEvery is how often Run folds the records written since the
	// last fold into the rollup tables (see Ledger.FoldRollups). Zero
	// means RollupInterval.
	RollupEvery time.Duration
	// Retention is how long records (and hourly rollups) are kept; day and
	// month rollups are kept for good. Zero keeps everything.
	Retention time.Duration
	// PruneEvery is how often retention runs. Zero means one hour.
	PruneEvery time.Duration
	// LogEvery bounds the overflow and write-error log lines to one per
	// interval. Zero means 10 s.
	LogEvery time.Duration
	// Logger receives those lines. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = 1 << 16
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 4096
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.RollupEvery <= 0 {
		o.RollupEvery = RollupInterval
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Hour
	}
	if o.LogEvery <= 0 {
		o.LogEvery = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Writer appends records to a Ledger off the hot path: Append queues and
// never blocks; Run writes the queue in batches. When the queue is full,
// Append summarises the record into a spill record instead (counted by
// Stats().Overflowed and logged at most once per LogEvery), so the totals
// per subject still add up. A Writer is safe for concurrent use.
type Writer struct {
	led   *Ledger
	opts  WriterOptions
	queue queue
	waits chan waitReq  // AppendWait's records, committed before it returns
	kick  chan struct{} // a batch's worth is queued: write now
	spill spill

	writeMu sync.Mutex // one batch write at a time: Run or Flush
	retry   []Record   // a batch whose write failed, written first next time

	appended    atomic.Int64
	overflowed  atomic.Int64
	written     atomic.Int64
	writeErrors atomic.Int64
	lastLog     atomic.Int64 // Unix nanoseconds of the last rate-limited log line
	lastPrune   time.Time    // guarded by writeMu
	lastFold    time.Time    // guarded by writeMu
}

// WriterStats are a Writer's counters, for metrics.
type WriterStats struct {
	// Appended counts records queued by Append.
	Appended int64
	// Overflowed counts records that found the queue full and were
	// summarised into spill records.
	Overflowed int64
	// Written counts records (spill records included) committed.
	Written int64
	// WriteErrors counts failed batch writes (each is retried).
	WriteErrors int64
	// Queued is how many records wait to be written now.
	Queued int
}

// NewWriter returns a Writer for led. It starts no goroutines: run Run.
func NewWriter(led *Ledger, opts WriterOptions) *Writer {
	opts = opts.withDefaults()
	return &Writer{
		led:      led,
		opts:     opts,
		lastFold: opts.Now(),
		queue:    queue{max: opts.QueueSize},
		waits:    make(chan waitReq, min(opts.QueueSize, opts.BatchSize)),
		kick:     make(chan struct{}, 1),
		spill:    spill{m: make(map[spillKey]*Spill)},
	}
}

// Append queues r and reports true, or, when the queue is full, adds r to
// a spill summary and reports false. It never blocks on I/O.
func (w *Writer) Append(r Record) bool {
	if n, ok := w.queue.push(r); ok {
		w.appended.Add(1)
		if n >= w.opts.BatchSize {
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
		return true
	}
	w.spill.add(r)
	n := w.overflowed.Add(1)
	w.logLimited("ledger: queue full; summarising records into spill records",
		slog.Int64("overflowed_total", n), slog.Int("queue_size", w.opts.QueueSize))
	return false
}

// waitReq is an AppendWait call: done receives the result of the commit
// that held rec.
type waitReq struct {
	rec  Record
	done chan error
}

// AppendWait appends r and returns once it is committed: the ledger half
// of durability "sync". Concurrent calls are group-committed: each batch
// Run writes takes every waiting record (and the queued ones), so they
// share one transaction and, with Options.Sync, one fsync. It needs Run
// to be running. Up to BatchSize calls wait in line; more block until Run
// takes some, or ctx ends. An error means r is not committed yet; the
// Writer keeps retrying it like any other record.
func (w *Writer) AppendWait(ctx context.Context, r Record) error {
	req := waitReq{rec: r, done: make(chan error, 1)}
	select {
	case w.waits <- req:
	case <-ctx.Done():
		return fmt.Errorf("ledger: append: %w", ctx.Err())
	}
	w.appended.Add(1)
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ledger: append: %w (the record stays queued)", ctx.Err())
	}
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		Appended:    w.appended.Load(),
		Overflowed:  w.overflowed.Load(),
		Written:     w.written.Load(),
		WriteErrors: w.writeErrors.Load(),
		Queued:      w.queue.len() + len(w.waits),
	}
}

// Run writes queued records in batches until ctx is done, then flushes
// what is left and returns the flush's error (nil when everything was
// written). Its writes step the engine.Pacer ctx carries (one of its own
// if none), but for a batch that AppendWait callers wait on, and the last
// flush. A batch is written every FlushInterval, as soon as BatchSize
// records wait, or as soon as an AppendWait call waits. Run also writes
// spill records and applies retention.
func (w *Writer) Run(ctx context.Context) error {
	tick := time.NewTicker(w.opts.FlushInterval)
	defer tick.Stop()
	var b batch
	failing := false
	paced := engine.Paced(ctx)
	for {
		// After a failed write, wait for the next tick instead of retrying
		// at the rate records arrive.
		kick, waits := w.kick, w.waits
		if failing {
			kick, waits = nil, nil
		}
		b.reset()
		ticked := false
		select {
		case <-ctx.Done():
			return w.Flush(engine.WithPacer(context.WithoutCancel(ctx), nil))
		case <-kick:
		case req := <-waits:
			b.add(req)
		case <-tick.C:
			ticked = true
		}
		w.writeMu.Lock()
		// Whatever arrived since the last batch joins this one: that is the
		// group commit for AppendWait, and what amortizes a transaction and
		// the rollup upserts over many records otherwise.
		w.fill(&b)
		wctx := paced
		if len(b.dones) > 0 {
			wctx = engine.WithPacer(ctx, nil) // AppendWait callers wait on it
		}
		failing = w.write(wctx, &b) != nil
		if ticked {
			w.foldIfDue(paced)
			w.pruneIfDue(paced)
		}
		w.writeMu.Unlock()
	}
}

// batch is what one transaction writes: records, and the AppendWait
// calls to answer once it commits.
type batch struct {
	recs  []Record
	dones []chan error
}

func (b *batch) reset() { b.recs, b.dones = b.recs[:0], b.dones[:0] }

func (b *batch) add(req waitReq) {
	b.recs = append(b.recs, req.rec)
	b.dones = append(b.dones, req.done)
}

// fill adds waiting and queued records to b, without blocking, up to
// BatchSize.
func (w *Writer) fill(b *batch) {
	for len(b.recs) < w.opts.BatchSize {
		select {
		case req := <-w.waits:
			b.add(req)
		default:
			b.recs = w.queue.take(b.recs, w.opts.BatchSize-len(b.recs))
			return
		}
	}
}

// Flush writes everything queued and summarised so far and folds it into
// the rollups, and returns the first error. Safe to call while Run runs
// (e.g. on shutdown, after the server stopped taking requests).
func (w *Writer) Flush(ctx context.Context) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	var b batch
	for {
		b.reset()
		w.fill(&b)
		if err := w.write(ctx, &b); err != nil {
			return err
		}
		if len(b.recs) == 0 && w.queue.len() == 0 && len(w.waits) == 0 {
			break
		}
	}
	w.lastFold = w.opts.Now()
	return w.led.FoldRollups(ctx)
}

// foldIfDue folds the rollups every RollupEvery. A failure is logged and
// retried at the next tick; the records stay in the chain meanwhile.
func (w *Writer) foldIfDue(ctx context.Context) {
	now := w.opts.Now()
	if now.Sub(w.lastFold) < w.opts.RollupEvery {
		return
	}
	w.lastFold = now
	if err := w.led.FoldRollups(ctx); err != nil {
		w.logLimited("ledger: folding the usage rollups failed; will retry", slog.Any("err", err))
	}
}

// write appends the retried records, then b's, then the spill records,
// and answers b's AppendWait calls. A failed write keeps its records for
// the next call. The caller holds writeMu.
func (w *Writer) write(ctx context.Context, b *batch) error {
	recs := append(w.retry, b.recs...)
	recs = append(recs, w.spill.take()...)
	w.retry = nil
	if len(recs) == 0 {
		return nil
	}
	err := w.led.Append(ctx, recs)
	for _, done := range b.dones {
		done <- err
	}
	if err != nil {
		w.writeErrors.Add(1)
		// Seq and hashes are reassigned on the retry. Beyond one queue's
		// worth, records are folded into spill summaries so that memory
		// stays bounded while the database is down.
		keep := min(len(recs), w.opts.QueueSize)
		w.retry = recs[:keep:keep]
		for _, r := range recs[keep:] {
			w.spill.add(r)
		}
		w.logLimited("ledger: write failed; will retry", slog.Int("records", len(recs)), slog.Any("err", err))
		return err
	}
	w.written.Add(int64(len(recs)))
	return nil
}

func (w *Writer) pruneIfDue(ctx context.Context) {
	if w.opts.Retention <= 0 {
		return
	}
	now := w.opts.Now()
	if !w.lastPrune.IsZero() && now.Sub(w.lastPrune) < w.opts.PruneEvery {
		return
	}
	w.lastPrune = now
	if _, err := w.led.Prune(ctx, now.Add(-w.opts.Retention)); err != nil {
		w.logLimited("ledger: retention failed; will retry", slog.Any("err", err))
	}
}

// logLimited logs msg at most once per LogEvery.
func (w *Writer) logLimited(msg string, attrs ...any) {
	now := w.opts.Now().UnixNano()
	last := w.lastLog.Load()
	if last != 0 && now-last < int64(w.opts.LogEvery) {
		return
	}
	if !w.lastLog.CompareAndSwap(last, now) {
		return
	}
	w.opts.Logger.Warn(msg, attrs...)
}
