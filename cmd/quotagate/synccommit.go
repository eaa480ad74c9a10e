package main

import (
	"context"
	"database/sql"
	"net/http"
	"sync"

	"google.golang.org/grpc"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// syncCommitter makes durability sync exact when the state and the ledger
// share one SQLite file: each Check's state and its ledger record are
// committed in one transaction (sqlite.Store.SaveWith with
// ledger.Ledger.AppendTx), before the Check is answered.
//
// The engine saves a charged state (SyncWrites) before Charge returns,
// when the decision is not yet in the caller's hands. So the store the
// engine sees defers the saves made on behalf of a Check (found through a
// slot that an interceptor puts in the Check's context) until the Check's
// Observe hook has the decision, then commits them with the record.
// Group commit still applies across Checks. Until it is committed, a
// deferred snapshot is what Load returns for its key, so an eviction
// never reads older state back.
//
// Two Checks on one key commit in the order of their snapshots' versions:
// a later snapshot (which includes the earlier charge) waits for the
// earlier Check's commit, so the state on disk never holds a charge whose
// record is missing. What remains outside this guarantee: a snapshot that
// the engine's periodic flush or an admin change saves directly while a
// Check on the same key is between its charge and its commit.
type syncCommitter struct {
	st  *sqlite.Store
	led *ledger.Ledger

	mu      sync.Mutex
	pending map[string][]pendingSnap
	// retry holds snapshots whose commit failed; the next save carries them.
	retry []engine.Snapshot
}

type pendingSnap struct {
	snap  engine.Snapshot
	owner *commitSlot
}

// commitSlot collects what one Check's engine saves deferred.
type commitSlot struct {
	snaps []engine.Snapshot
	done  chan struct{} // closed once committed (or failed)
	// committed is set once commit ran, so the safety net does nothing.
	committed bool
}

type slotKey struct{}

func newSyncCommitter(st *sqlite.Store, led *ledger.Ledger) *syncCommitter {
	return &syncCommitter{st: st, led: led, pending: map[string][]pendingSnap{}}
}

func slotFrom(ctx context.Context) *commitSlot {
	s, _ := ctx.Value(slotKey{}).(*commitSlot)
	return s
}

// Load returns the newest deferred snapshot of key, else the stored one.
func (c *syncCommitter) Load(ctx context.Context, key string) (engine.Snapshot, bool, error) {
	c.mu.Lock()
	var best *engine.Snapshot
	for i := range c.pending[key] {
		if p := &c.pending[key][i].snap; best == nil || p.Version > best.Version {
			best = p
		}
	}
	for i := range c.retry {
		if r := &c.retry[i]; r.Key == key && (best == nil || r.Version > best.Version) {
			best = r
		}
	}
	if best != nil {
		snap := *best
		c.mu.Unlock()
		return snap, true, nil
	}
	c.mu.Unlock()
	return c.st.Load(ctx, key)
}

// Save defers snaps when ctx belongs to a Check, and saves them (with any
// snapshots a failed commit left) at once otherwise.
func (c *syncCommitter) Save(ctx context.Context, snaps []engine.Snapshot) error {
	c.mu.Lock()
	if s := slotFrom(ctx); s != nil && !s.committed {
		s.snaps = append(s.snaps, snaps...)
		for _, sn := range snaps {
			c.pending[sn.Key] = append(c.pending[sn.Key], pendingSnap{snap: sn, owner: s})
		}
		c.mu.Unlock()
		return nil
	}
	retry := c.retry
	c.retry = nil
	c.mu.Unlock()
	err := c.st.Save(ctx, append(retry, snaps...))
	if err != nil {
		c.mu.Lock()
		c.retry = append(c.retry, retry...)
		c.mu.Unlock()
	}
	return err
}

// commit writes s's deferred snapshots and rec (nil for none) in one
// transaction, after the earlier Checks on the same keys. On failure the
// snapshots are kept for the next save and the error is returned; the
// caller then queues the record the ordinary way.
func (c *syncCommitter) commit(ctx context.Context, s *commitSlot, rec *ledger.Record) error {
	c.mu.Lock()
	s.committed = true
	for {
		wait := c.earlierLocked(s)
		if wait == nil {
			break
		}
		c.mu.Unlock()
		<-wait
		c.mu.Lock()
	}
	snaps := s.snaps
	c.mu.Unlock()
	var also sqlite.TxFunc
	if rec != nil {
		also = func(ctx context.Context, tx *sql.Tx) error { return c.led.AppendTx(ctx, tx, []ledger.Record{*rec}) }
	}
	err := c.st.SaveWith(context.WithoutCancel(ctx), snaps, also)
	c.mu.Lock()
	for _, sn := range snaps {
		ps := c.pending[sn.Key]
		for i := 0; i < len(ps); i++ {
			if ps[i].owner == s {
				ps = append(ps[:i], ps[i+1:]...)
				i--
			}
		}
		if len(ps) == 0 {
			delete(c.pending, sn.Key)
		} else {
			c.pending[sn.Key] = ps
		}
	}
	if err != nil {
		c.retry = append(c.retry, snaps...)
	}
	c.mu.Unlock()
	close(s.done)
	return err
}

// earlierLocked returns the done channel of another Check whose deferred
// snapshot of one of s's keys is older than s's, or nil.
func (c *syncCommitter) earlierLocked(s *commitSlot) <-chan struct{} {
	for _, sn := range s.snaps {
		for _, p := range c.pending[sn.Key] {
			if p.owner != s && p.snap.Version < sn.Version {
				return p.owner.done
			}
		}
	}
	return nil
}

// within runs fn with a commit slot in its context, then commits whatever
// the slot still holds: the safety net for a Check whose Observe hook did
// not run.
func (c *syncCommitter) within(ctx context.Context, fn func(context.Context)) {
	s := &commitSlot{done: make(chan struct{})}
	fn(context.WithValue(ctx, slotKey{}, s))
	c.mu.Lock()
	done := s.committed
	c.mu.Unlock()
	if !done {
		c.commit(ctx, s, nil)
	}
}

// unaryInterceptor gives every gRPC call a commit slot.
func (c *syncCommitter) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	c.within(ctx, func(ctx context.Context) { resp, err = h(ctx, req) })
	return resp, err
}

// httpHandler gives every HTTP authorization request a commit slot.
func (c *syncCommitter) httpHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.within(r.Context(), func(ctx context.Context) { h.ServeHTTP(w, r.WithContext(ctx)) })
	})
}
