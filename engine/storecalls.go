package engine

import (
	"context"
	"time"
)

// StoreObserver is told of every call the engine makes to its Store (op
// "load", "save" or "forget"): how long it took and its error. It runs
// on the caller's goroutine, never under an engine lock, and must not
// block.
type StoreObserver func(ctx context.Context, op string, took time.Duration, err error)

// storeClock starts timing a Store call: the zero Time when nothing
// observes them, so that an unobserved engine reads no clock for it.
func (e *Engine) storeClock() time.Time {
	if e.observeStore == nil {
		return time.Time{}
	}
	return time.Now()
}

// loadState reads key's snapshot from the Store, counting and timing the
// call. No lock is held.
func (e *Engine) loadState(ctx context.Context, key string) (Snapshot, bool, error) {
	start := e.storeClock()
	snap, ok, err := e.store.Load(ctx, key)
	e.loads.Add(1)
	if err != nil {
		e.storeErrors.Add(1)
	}
	if e.observeStore != nil {
		e.observeStore(ctx, "load", time.Since(start), err)
	}
	return snap, ok, err
}

// saveStates saves snaps to the Store and, when the Store keeps them
// (PendingStore), the pending records recs with them in one call, at now
// (Unix ns), counting and timing the call. No lock is held.
func (e *Engine) saveStates(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now int64) error {
	if len(snaps) == 0 && len(recs) == 0 {
		return nil
	}
	start := e.storeClock()
	var err error
	if ps, ok := e.store.(PendingStore); ok && len(recs) > 0 {
		err = ps.SavePending(ctx, snaps, recs, time.Unix(0, now))
	} else if len(snaps) > 0 {
		err = e.store.Save(ctx, snaps)
	}
	if err != nil {
		e.storeErrors.Add(1)
	}
	if e.observeStore != nil {
		e.observeStore(ctx, "save", time.Since(start), err)
	}
	return err
}

// forgetStates drops keys from a Store that forgets idle state, timing
// the call. No lock is held.
func (e *Engine) forgetStates(ctx context.Context, f Forgetter, keys []KeyVersion) error {
	start := e.storeClock()
	err := f.Forget(ctx, keys)
	if e.observeStore != nil {
		e.observeStore(ctx, "forget", time.Since(start), err)
	}
	return err
}
