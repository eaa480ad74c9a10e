package durable

import (
	"context"
	"database/sql"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// Committer makes durability sync exact when the state and the ledger
// share one SQLite file: it commits each decision's state together with
// its ledger record, in one transaction (sqlite.Store.SaveWith with
// ledger.Ledger.AppendTx), before the Check is answered.
//
// It is the engine's Store and its Deferrer (engine.Config.Deferrer).
// Charge hands it the snapshots of a decision (Defer) and returns them in
// Decision.Unsaved; the caller commits them with the decision's record
// (Commit). Between the two, the deferred snapshot is what Load returns
// for its key. Every save of a key, deferred or not, is ordered by
// version: see the package doc. It is safe for concurrent use.
type Committer struct {
	st  *sqlite.Store
	led *ledger.Ledger

	mu sync.Mutex
	// pending holds, per key, the deferred snapshots not yet committed.
	pending map[string][]pendingSnap
	// retry holds, per key, the newest snapshot whose commit failed; every
	// later save and commit carries it until one succeeds, and Load
	// returns it meanwhile.
	retry map[string]engine.Snapshot
	// retryPend holds the pending records (engine.PendingRecord) whose
	// commit failed, carried likewise.
	retryPend map[uuid.UUID]engine.PendingRecord
}

var (
	_ engine.PendingStore    = (*Committer)(nil)
	_ engine.PendingDeferrer = (*Committer)(nil)
)

// pendingSnap is one deferred snapshot and the decision it belongs to.
type pendingSnap struct {
	snap engine.Snapshot
	dec  *decision
}

// decision is the deferred snapshots of one Charge.
type decision struct {
	done chan struct{} // closed once they are committed (or failed)
	// pend is the decision's pending record (DeferPending), nil for none.
	pend *engine.PendingRecord
}

// NewCommitter returns a Committer that writes the state to st and the
// records to led, which must be in st's file.
func NewCommitter(st *sqlite.Store, led *ledger.Ledger) *Committer {
	return &Committer{st: st, led: led, pending: map[string][]pendingSnap{}, retry: map[string]engine.Snapshot{},
		retryPend: map[uuid.UUID]engine.PendingRecord{}}
}

// Defer records snaps, the snapshots of one decision, as saved but not yet
// committed. It implements engine.Deferrer: the engine calls it with the
// keys' locks held, so it only takes c's lock.
func (c *Committer) Defer(snaps []engine.Snapshot) {
	c.deferDecision(snaps, &decision{done: make(chan struct{})})
}

// DeferPending is Defer for a decision held for settlement: Commit writes
// rec, its pending record, in the same transaction as snaps. It
// implements engine.PendingDeferrer.
func (c *Committer) DeferPending(snaps []engine.Snapshot, rec engine.PendingRecord) {
	c.deferDecision(snaps, &decision{done: make(chan struct{}), pend: &rec})
}

// deferDecision records snaps as deferred by dec.
func (c *Committer) deferDecision(snaps []engine.Snapshot, dec *decision) {
	c.mu.Lock()
	for _, sn := range snaps {
		c.pending[sn.Key] = append(c.pending[sn.Key], pendingSnap{snap: sn, dec: dec})
	}
	c.mu.Unlock()
}

// Load returns the newest deferred or uncommitted snapshot of key, else the
// stored one.
func (c *Committer) Load(ctx context.Context, key string) (engine.Snapshot, bool, error) {
	c.mu.Lock()
	best, ok := c.retry[key]
	for _, p := range c.pending[key] {
		if !ok || p.snap.Version > best.Version {
			best, ok = p.snap, true
		}
	}
	c.mu.Unlock()
	if ok {
		return best, true, nil
	}
	return c.st.Load(ctx, key)
}

// Save saves snaps at once, with the snapshots of failed commits, once
// every deferred snapshot of the same keys with a version up to theirs is
// committed: so a flush or an eviction never writes a charge before the
// decision's record. This is the engine's path for everything it does not
// defer.
func (c *Committer) Save(ctx context.Context, snaps []engine.Snapshot) error {
	return c.SavePending(ctx, snaps, nil, time.Time{})
}

// SavePending is Save that also writes recs, pending records, in the same
// transaction (see engine.PendingStore): the engine's path for the records
// it flushes and for settlements. A zero now means the newest DecidedAt of
// the records.
func (c *Committer) SavePending(ctx context.Context, snaps []engine.Snapshot, recs []engine.PendingRecord, now time.Time) error {
	c.mu.Lock()
	c.awaitLocked(snaps, nil)
	retry, retryPend := c.retriesLocked()
	c.mu.Unlock()
	var err error
	if len(recs)+len(retryPend) == 0 {
		err = c.st.Save(ctx, append(retry, snaps...))
	} else {
		all := append(retryPend, recs...)
		if now.IsZero() {
			now = newestDecided(all)
		}
		err = c.st.SavePending(ctx, append(retry, snaps...), all, now)
	}
	if err == nil {
		c.mu.Lock()
		c.retriedLocked(retry, retryPend)
		c.mu.Unlock()
	}
	return err
}

// newestDecided returns the newest DecidedAt of recs: the engine's clock,
// which prunes expired records, rather than this machine's.
func newestDecided(recs []engine.PendingRecord) time.Time {
	var now time.Time
	for _, r := range recs {
		if r.DecidedAt.After(now) {
			now = r.DecidedAt
		}
	}
	return now
}

// LoadPending returns the stored pending records that expire after now.
func (c *Committer) LoadPending(ctx context.Context, now time.Time) ([]engine.PendingRecord, error) {
	return c.st.LoadPending(ctx, now)
}

// Commit writes snaps, the Decision.Unsaved of one decision, its pending
// record if it deferred one (DeferPending), and rec (nil for none) in one
// transaction, after the earlier decisions on the same keys. On failure the snapshots are kept for the next save, Load keeps
// returning them, and the error is returned: the caller then queues the
// record the ordinary way. Every decision whose snapshots were deferred
// must be committed, or later saves of its keys wait for ever.
func (c *Committer) Commit(ctx context.Context, snaps []engine.Snapshot, rec *ledger.Record) error {
	c.mu.Lock()
	dec := c.ownerLocked(snaps)
	c.awaitLocked(snaps, dec)
	retry, pend := c.retriesLocked()
	retried := slices.Clone(pend)
	c.mu.Unlock()
	if dec != nil && dec.pend != nil {
		pend = append(pend, *dec.pend)
	}
	also, err := c.commitWork(pend, rec)
	if err == nil {
		err = c.st.SaveWith(context.WithoutCancel(ctx), append(retry, snaps...), also)
	}
	c.mu.Lock()
	if dec != nil {
		c.dropLocked(snaps, dec)
	}
	if err != nil {
		for _, sn := range snaps {
			if r, ok := c.retry[sn.Key]; !ok || r.Version < sn.Version {
				c.retry[sn.Key] = sn
			}
		}
		if dec != nil && dec.pend != nil {
			c.retryPend[dec.pend.ID] = *dec.pend
		}
	} else {
		c.retriedLocked(retry, retried)
	}
	c.mu.Unlock()
	if dec != nil {
		close(dec.done)
	}
	return err
}

// commitWork returns the work Commit does with the snapshots: write pend,
// pending records, and rec, a ledger record (nil for none); nil when
// there is none.
func (c *Committer) commitWork(pend []engine.PendingRecord, rec *ledger.Record) (sqlite.TxFunc, error) {
	var pendTx sqlite.TxFunc
	if len(pend) > 0 {
		var err error
		if pendTx, err = c.st.PendingTx(pend, newestDecided(pend)); err != nil {
			return nil, err
		}
	}
	if pendTx == nil && rec == nil {
		return nil, nil
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		if pendTx != nil {
			if err := pendTx(ctx, tx); err != nil {
				return err
			}
		}
		if rec != nil {
			return c.led.AppendTx(ctx, tx, []ledger.Record{*rec})
		}
		return nil
	}, nil
}

// ownerLocked returns the decision that deferred snaps, or nil when they
// were not deferred (or there are none). The caller holds c.mu.
func (c *Committer) ownerLocked(snaps []engine.Snapshot) *decision {
	if len(snaps) == 0 {
		return nil
	}
	for _, p := range c.pending[snaps[0].Key] {
		if p.snap.Version == snaps[0].Version {
			return p.dec
		}
	}
	return nil
}

// awaitLocked returns once no other decision holds a deferred snapshot of
// one of snaps' keys that is older than snaps' (for a save that is not
// dec's own, an equal version counts too: it is the same snapshot, not
// yet committed with its record). The caller holds c.mu; awaitLocked
// releases it while it waits.
func (c *Committer) awaitLocked(snaps []engine.Snapshot, dec *decision) {
	for {
		wait := c.earlierLocked(snaps, dec)
		if wait == nil {
			return
		}
		c.mu.Unlock()
		<-wait
		c.mu.Lock()
	}
}

// earlierLocked returns the done channel of a decision whose deferred
// snapshot must be committed before snaps, or nil. The caller holds c.mu.
func (c *Committer) earlierLocked(snaps []engine.Snapshot, dec *decision) <-chan struct{} {
	for _, sn := range snaps {
		for _, p := range c.pending[sn.Key] {
			if p.dec != dec && (p.snap.Version < sn.Version || (dec == nil && p.snap.Version == sn.Version)) {
				return p.dec.done
			}
		}
	}
	return nil
}

// dropLocked removes dec's snapshots of snaps' keys from pending. The
// caller holds c.mu.
func (c *Committer) dropLocked(snaps []engine.Snapshot, dec *decision) {
	for _, sn := range snaps {
		ps := c.pending[sn.Key]
		kept := ps[:0]
		for _, p := range ps {
			if p.dec != dec {
				kept = append(kept, p)
			}
		}
		clear(ps[len(kept):])
		if len(kept) == 0 {
			delete(c.pending, sn.Key)
		} else {
			c.pending[sn.Key] = kept
		}
	}
}

// retriesLocked returns the snapshots and the pending records of failed
// commits, for the next save to carry. They stay in retry and retryPend
// until a save of them succeeds. The caller holds c.mu.
func (c *Committer) retriesLocked() ([]engine.Snapshot, []engine.PendingRecord) {
	return slices.Collect(maps.Values(c.retry)), slices.Collect(maps.Values(c.retryPend))
}

// retriedLocked drops from retry the snapshots that a successful save
// carried, unless a newer one of the key failed meanwhile, and from
// retryPend the records it carried (pend), unless one of the id failed
// again in another state. The caller holds c.mu.
func (c *Committer) retriedLocked(saved []engine.Snapshot, pend []engine.PendingRecord) {
	for _, r := range pend {
		if cur, ok := c.retryPend[r.ID]; ok && cur.State == r.State {
			delete(c.retryPend, r.ID)
		}
	}
	for _, sn := range saved {
		if r, ok := c.retry[sn.Key]; ok && r.Version <= sn.Version {
			delete(c.retry, sn.Key)
		}
	}
}

// Close saves the snapshots of failed commits a last time. Call it once no
// decision is in flight, before the store is closed.
func (c *Committer) Close(ctx context.Context) error {
	c.mu.Lock()
	retry, pend := c.retriesLocked()
	c.mu.Unlock()
	if len(retry) == 0 && len(pend) == 0 {
		return nil
	}
	return c.Save(ctx, nil)
}
