package engine

import (
	"context"
	"fmt"
	"time"
)

// flushItem is one snapshot taken by Flush, with what to update once the
// Store has it.
type flushItem struct {
	si    int
	key   string
	st    *subjectState
	entry *pendingSave // non-nil for the retry of a failed eviction save
}

// Flush saves every changed subject's snapshot to the Store in one batch,
// retries evicted state whose save failed, and, when the Store is a
// Forgetter, drops up to sweepBatch stored states that have become idle. Snapshots are taken under
// each shard's lock; the Store is called without any lock.
func (e *Engine) Flush(ctx context.Context) error {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	pace := PacerFrom(ctx)
	var items []flushItem
	var snaps []Snapshot
	var recs []PendingRecord
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		// The records that go with this shard's states, as they are now.
		if e.pendOf != nil {
			recs = e.pending.recordsOf(recs, e.pendOf[i].ids)
			e.pendOf[i].ids = e.pendOf[i].ids[:0]
		}
		q := sh.takeQueuedLocked()
		for _, key := range sh.dirty {
			st, ok := sh.lru.Peek(key)
			if !ok || !st.dirty {
				continue
			}
			st.dirty = false
			items = append(items, flushItem{si: i, key: key, st: st})
			snaps = append(snaps, st.snapshotLocked(key))
		}
		sh.dirty = sh.dirty[:0]
		for key, entry := range sh.pending {
			if entry.failed && entry.inflight == 0 {
				entry.failed = false
				entry.inflight++
				items = append(items, flushItem{si: i, key: key, st: entry.st, entry: entry})
				snaps = append(snaps, entry.st.snapshotLocked(key))
			}
		}
		sh.mu.Unlock()
		e.saveQueued(ctx, sh, q)
		pace.Step()
	}
	e.sweepStore()
	recs = e.pending.takeChanges(recs, pace)
	if len(snaps) == 0 && len(recs) == 0 {
		return nil
	}
	err := e.saveStates(ctx, snaps, recs, e.now().UnixNano())
	if err != nil {
		e.pending.requeue(recs)
	}
	e.completeFlush(items, snaps, err == nil, pace)
	if err != nil {
		return fmt.Errorf("engine: flush %d snapshots: %w", len(snaps), err)
	}
	return nil
}

// completeFlush records the outcome of a flush: saved versions on
// success; on failure the states are marked dirty again for the next one.
func (e *Engine) completeFlush(items []flushItem, snaps []Snapshot, ok bool, pace *Pacer) {
	locked := -1
	for j, it := range items {
		if it.si != locked {
			if locked >= 0 {
				e.shards[locked].mu.Unlock()
				pace.Step()
			}
			locked = it.si
			e.shards[locked].mu.Lock()
		}
		sh := &e.shards[it.si]
		switch {
		case it.entry != nil:
			sh.completeLocked(it.key, it.entry, snaps[j].Version, ok)
		case !ok:
			if cur, found := sh.lru.Peek(it.key); found && cur == it.st {
				sh.markDirtyLocked(it.key, it.st)
			}
		case it.st.savedVersion < snaps[j].Version:
			it.st.savedVersion = snaps[j].Version
		}
	}
	if locked >= 0 {
		e.shards[locked].mu.Unlock()
	}
}

// Run flushes every FlushInterval until ctx is done, then flushes one last
// time. The periodic flushes are paced (see Pacer) so that a large one
// does not hold up Checks: by the Pacer ctx carries, which the process's
// other background work should share, or by one of Run's own. The last
// flush is not paced. A failed periodic flush is counted in Stats.StoreErrors and retried
// at the next tick. Run returns nil on a clean stop, or the error of the
// final flush.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.flushEvery)
	defer t.Stop()
	paced := Paced(ctx)
	for {
		select {
		case <-ctx.Done():
			return e.Flush(WithPacer(context.WithoutCancel(ctx), nil))
		case <-t.C:
			_ = e.Flush(paced) // counted in StoreErrors; the states stay dirty
		}
	}
}
