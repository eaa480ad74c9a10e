package engine

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// subjectState is the in-memory state of one subject or team. It is guarded
// by the lock of the shard that holds it (in its LRU or its pending map).
type subjectState struct {
	// version increments on every mutation; savedVersion is the highest
	// version the Store is known to hold.
	version, savedVersion uint64
	// dirty is true when the state changed since its last snapshot; the key
	// is then in its shard's dirty list.
	dirty   bool
	windows []windowState
	// Balance: the allowance left of the grant period [grantStart,
	// grantEnd) (unix ns; grantEnd 0 means not computed yet), and credits.
	// grantEnd is saved: it is that of the grant that started the period
	// (rollGrantLocked).
	allowance, credits   int64
	grantStart, grantEnd int64
	// grantAmount is the grant Amount that allowance was measured
	// against (-1: an unlimited grant; 0: not known), so that a grant
	// that changes mid-period applies at once (regrantLocked).
	grantAmount      int64
	alerted, refused int64 // grant period of the last balance events
	grantSet         bool
	alertedSet       bool
	refusedSet       bool
	prof             *profileState // nil: no run-time profile
	// profAt is when prof was last read from the ProfileStore (unix ns;
	// 0: never), for the profile TTL of shared profiles (profile.go).
	profAt int64
	// inline backs windows while there are at most two, so that the common
	// case reads the state and its counters from one allocation.
	inline [2]windowState
	// key is the key the state is cached under. A request for it uses this
	// copy of the subject (acquire), so that what outlives the request (a
	// pending decision, a ledger row) holds one string per subject, not
	// each request's own. The field fits the state's size class (288 B).
	key string
}

// profileState is a run-time profile with its limits compiled against the
// ruleset rs; they are recompiled, and the profile validated again, after
// a reload (usableLocked).
type profileState struct {
	p     Profile
	rs    *ruleset
	rules []limitRule
	// problem is why p does not validate under rs (nil: it does); logged
	// records that it was logged.
	problem error
	logged  bool
}

// rulesLocked returns the profile's compiled limits for rs, or nil when
// the profile is not usable there. The caller holds the lock of the state
// that owns ps.
func (ps *profileState) rulesLocked(rs *ruleset, subject string) []limitRule {
	if !ps.usableLocked(rs, subject) {
		return nil
	}
	return ps.rules
}

// windowLocked returns the index of the window named key, adding it if
// absent. The caller holds st's lock.
func (st *subjectState) windowLocked(key string) int {
	for i := range st.windows {
		if st.windows[i].key == key {
			return i
		}
	}
	if st.windows == nil {
		st.windows = st.inline[:0]
	}
	st.windows = append(st.windows, windowState{key: key})
	return len(st.windows) - 1
}

// pendingSave tracks an evicted state whose save is in flight (or failed):
// until it completes, a miss revives the state from here instead of
// loading an older snapshot from the Store.
type pendingSave struct {
	st       *subjectState
	inflight int
	failed   bool
}

// queuedSave is a snapshot waiting to be saved once the shard is unlocked,
// or with forget set, a key and version to forget.
type queuedSave struct {
	entry  *pendingSave
	snap   Snapshot
	forget bool
}

// shard is one lock stripe of the state cache.
type shard struct {
	mu      sync.Mutex
	lru     *simplelru.LRU[string, *subjectState]
	pending map[string]*pendingSave
	queued  []queuedSave // evicted under the lock, saved after it
	dirty   []string
	// Counters, guarded by mu.
	hits, misses, evictions uint64
	meter                   rateCell
	// epoch changes whenever the Store's copy of a key of this shard may
	// have changed behind the cache: when an evicted state is queued for
	// saving, when such a save completes, and when a state already saved
	// is dropped. A load that read the Store
	// before a change must not insert what it read (see load). It is only
	// written under mu, but read without it.
	epoch atomic.Uint64
	// idle reports whether an evicted state may be dropped (see idle.go);
	// it is consulted only when forgets is set, when the Store can forget
	// a key. Both are set by New.
	idle    func(key string, st *subjectState) bool
	forgets bool
	// scratch holds the applied limits of the decision that holds mu.
	scratch [MaxLimitsPerRequest]applied
	_       [64]byte // keep neighbouring shards' locks off this cache line
}

func (sh *shard) init(capacity int) error {
	lru, err := simplelru.NewLRU(capacity, sh.onEvictLocked)
	if err != nil {
		return fmt.Errorf("engine: shard cache: %w", err)
	}
	sh.lru = lru
	sh.pending = make(map[string]*pendingSave)
	return nil
}

// onEvictLocked runs under the shard lock when the LRU drops a state. An
// idle state (idle.go) that the Store never had is dropped, and one it may
// have is forgotten there if the Store can forget. Otherwise a state the
// Store already holds is dropped; any other is snapshotted and queued for
// saving after the lock is released. A state queued for the Store stays
// findable in pending until the call returns.
func (sh *shard) onEvictLocked(key string, st *subjectState) {
	sh.evictions++
	entry := sh.pending[key]
	if sh.forgets && sh.idle(key, st) {
		if st.savedVersion == 0 && entry == nil {
			st.dirty = false
			return // nothing was saved: there is nothing to forget
		}
		sh.queueLocked(key, st, entry, queuedSave{snap: Snapshot{Key: key, Version: st.version}, forget: true})
		return
	}
	if !st.dirty && st.version == st.savedVersion {
		// Dropped without a save: but the Store's copy may have changed
		// since a concurrent load read it (a sync save or a hand-over to
		// the Deferrer marks a state saved without an eviction), so that
		// load must not insert what it read.
		sh.epoch.Add(1)
		return
	}
	sh.queueLocked(key, st, entry, queuedSave{snap: st.snapshotLocked(key)})
}

// queueLocked queues q, a save or forget of st, for after the lock is
// released, keeping st in pending until it completes. The caller holds
// sh.mu.
func (sh *shard) queueLocked(key string, st *subjectState, entry *pendingSave, q queuedSave) {
	if entry == nil || entry.st != st {
		entry = &pendingSave{st: st}
		sh.pending[key] = entry
	}
	entry.inflight++
	st.dirty = false
	q.entry = entry
	sh.queued = append(sh.queued, q)
	sh.epoch.Add(1)
}

// getLocked returns the state of key from the LRU, or revives it from
// pending, or returns nil on a miss. The caller holds sh.mu.
func (sh *shard) getLocked(key string) *subjectState {
	if st, ok := sh.lru.Get(key); ok {
		sh.hits++
		return st
	}
	if entry := sh.pending[key]; entry != nil {
		delete(sh.pending, key)
		sh.hits++
		st := entry.st
		sh.lru.Add(key, st)
		if st.version != st.savedVersion {
			sh.markDirtyLocked(key, st)
		}
		return st
	}
	sh.misses++
	return nil
}

// markDirtyLocked records that st changed. The caller holds sh.mu.
func (sh *shard) markDirtyLocked(key string, st *subjectState) {
	if !st.dirty {
		st.dirty = true
		if len(sh.dirty) >= 2*sh.lru.Len()+64 {
			sh.compactDirtyLocked()
		}
		sh.dirty = append(sh.dirty, key)
	}
}

// compactDirtyLocked drops from the dirty list the keys whose state is no
// longer cached or no longer dirty (evictions save those), so that an
// engine that is never flushed does not grow the list without bound. The
// caller holds sh.mu.
func (sh *shard) compactDirtyLocked() {
	kept := sh.dirty[:0]
	seen := make(map[string]bool, sh.lru.Len())
	for _, k := range sh.dirty {
		if st, ok := sh.lru.Peek(k); ok && st.dirty && !seen[k] {
			seen[k] = true
			kept = append(kept, k)
		}
	}
	clear(sh.dirty[len(kept):])
	sh.dirty = kept
}

// mutatedLocked bumps st's version and marks it dirty. The caller holds
// sh.mu.
func (sh *shard) mutatedLocked(key string, st *subjectState) {
	st.version++
	sh.markDirtyLocked(key, st)
}

// takeQueuedLocked hands over the snapshots queued by evictions. The
// caller holds sh.mu and must pass them to saveQueued after unlocking.
func (sh *shard) takeQueuedLocked() []queuedSave {
	q := sh.queued
	sh.queued = nil
	return q
}

// saveQueued saves snapshots queued by evictions of sh. It must be called
// without any lock held.
func (e *Engine) saveQueued(ctx context.Context, sh *shard, q []queuedSave) {
	if len(q) == 0 {
		return
	}
	var snaps []Snapshot
	var forget []KeyVersion
	for i := range q {
		if q[i].forget {
			forget = append(forget, KeyVersion{Key: q[i].snap.Key, Version: q[i].snap.Version})
		} else {
			snaps = append(snaps, q[i].snap)
		}
	}
	var saveErr, forgetErr error
	if len(snaps) > 0 {
		saveErr = e.saveStates(context.WithoutCancel(ctx), snaps, nil, 0)
	}
	if len(forget) > 0 {
		forgetErr = e.forgetStates(context.WithoutCancel(ctx), e.forgetter(), forget)
	}
	if saveErr == nil && forgetErr != nil {
		e.storeErrors.Add(1)
	}
	sh.mu.Lock()
	for i := range q {
		ok := saveErr == nil
		if q[i].forget {
			ok = forgetErr == nil
		}
		sh.completeLocked(q[i].snap.Key, q[i].entry, q[i].snap.Version, ok)
	}
	sh.mu.Unlock()
}

// completeLocked records the outcome of saving an evicted state. A failed
// save stays pending and is retried by the next Flush. The caller holds
// sh.mu.
func (sh *shard) completeLocked(key string, entry *pendingSave, version uint64, ok bool) {
	entry.inflight--
	if !ok {
		entry.failed = true
		return
	}
	sh.epoch.Add(1)
	if entry.st.savedVersion < version {
		entry.st.savedVersion = version
	}
	if entry.inflight == 0 && sh.pending[key] == entry && entry.st.version == entry.st.savedVersion {
		delete(sh.pending, key)
	}
}

// shardIndex picks the shard of key with the engine's seeded hash.
func (e *Engine) shardIndex(key string) int {
	return int(maphash.String(e.seed, key) & e.mask)
}

// held is the state one request works on, with the shard locks held.
type held struct {
	si, ti   int // shard indexes; ti < 0 when no team state is needed
	st, ts   *subjectState
	team     *teamRules
	teamName string
}

func (e *Engine) lockPair(si, ti int) {
	switch {
	case ti < 0 || ti == si:
		e.shards[si].mu.Lock()
	case si < ti:
		e.shards[si].mu.Lock()
		e.shards[ti].mu.Lock()
	default:
		e.shards[ti].mu.Lock()
		e.shards[si].mu.Lock()
	}
}

func (e *Engine) unlockPair(si, ti int) {
	e.shards[si].mu.Unlock()
	if ti >= 0 && ti != si {
		e.shards[ti].mu.Unlock()
	}
}

// maxAcquireAttempts bounds the retries of acquire when state keeps being
// evicted between load and use (a cache far too small for the load).
const maxAcquireAttempts = 64

// acquire locks the shards of req's subject and, if its team keeps state,
// of the team (in shard-index order), loading missing state from the Store
// without any lock held. On success the locks are held and the caller must
// call unlockPair(h.si, h.ti). With create false, a subject with no state
// anywhere yields h.st == nil and no locks held.
func (e *Engine) acquire(ctx context.Context, rs *ruleset, req *Request, u *userRules, create bool, h *held) error {
	teamName := rs.teamFor(req, u, nil)
	si := e.shardIndex(req.Subject)
	for range maxAcquireAttempts {
		tr := rs.teams[teamName]
		ti := -1
		if tr.needsState() {
			ti = e.shardIndex(tr.key)
		}
		e.lockPair(si, ti)
		st := e.shards[si].getLocked(req.Subject)
		var ts *subjectState
		if ti >= 0 {
			ts = e.shards[ti].getLocked(tr.key)
		}
		if st == nil || (ti >= 0 && ts == nil) {
			e.unlockPair(si, ti)
			if st == nil {
				found, err := e.load(ctx, rs, si, req.Subject, create)
				if err != nil || !found {
					h.st = nil
					return err
				}
			}
			if ti >= 0 && ts == nil {
				if _, err := e.load(ctx, rs, ti, tr.key, true); err != nil {
					return err
				}
			}
			continue
		}
		if actual := rs.teamFor(req, u, st.prof.usableOrNilLocked(rs, req.Subject)); actual != teamName {
			e.unlockPair(si, ti)
			teamName = actual
			continue
		}
		if st.key == req.Subject {
			req.Subject = st.key // the cached copy: see subjectState.key
		}
		*h = held{si: si, ti: ti, st: st, ts: ts, team: tr, teamName: teamName}
		return nil
	}
	return fmt.Errorf("engine: charge %q: its state kept being evicted before use: raise CacheSize", req.Subject)
}

// release unlocks the shards si and ti (ti < 0: none) and saves what
// evictions queued on them while they were locked.
func (e *Engine) release(ctx context.Context, si, ti int) {
	q1 := e.shards[si].takeQueuedLocked()
	var q2 []queuedSave
	if ti >= 0 && ti != si {
		q2 = e.shards[ti].takeQueuedLocked()
	}
	e.unlockPair(si, ti)
	e.saveQueued(ctx, &e.shards[si], q1)
	if ti >= 0 && ti != si {
		e.saveQueued(ctx, &e.shards[ti], q2)
	}
}

// load reads key from the Store (no lock held) and inserts it into shard i
// unless another goroutine did first. A key the Store does not have gets
// fresh state with its starting credits, if create is set; otherwise load
// reports found == false.
func (e *Engine) load(ctx context.Context, rs *ruleset, i int, key string, create bool) (found bool, err error) {
	sh := &e.shards[i]
	for range maxLoadAttempts {
		// An eviction whose save lands between the Store read and the
		// insert below would leave the older snapshot in the cache and
		// lose the evicted usage, so the read is only used if the shard's
		// epoch has not moved since before it.
		epoch := sh.epoch.Load()
		at := e.now().UnixNano()
		snap, ok, err := e.loadState(ctx, key)
		if err != nil {
			return false, fmt.Errorf("engine: load state of %q: %w", key, err)
		}
		var st *subjectState
		switch {
		case ok:
			st = stateFromSnapshot(snap)
			if snap.Version == 0 { // never changed: only a shared profile
				st.credits = rs.startingCredits(key)
			}
		case create:
			st = &subjectState{credits: rs.startingCredits(key)}
		}
		if st != nil && e.profilesLoaded() {
			st.profAt = at
		}
		sh.mu.Lock()
		if sh.lru.Contains(key) || sh.pending[key] != nil {
			sh.mu.Unlock()
			return true, nil
		}
		if sh.epoch.Load() != epoch {
			sh.mu.Unlock()
			continue
		}
		if st == nil { // not in the Store, and not to be created
			sh.mu.Unlock()
			return false, nil
		}
		st.key = key
		sh.lru.Add(key, st)
		q := sh.takeQueuedLocked()
		sh.mu.Unlock()
		e.saveQueued(ctx, sh, q)
		return true, nil
	}
	// The caller looks again and, finding nothing, loads again.
	return true, nil
}

// maxLoadAttempts bounds how often load rereads the Store because the
// shard's saves kept moving under it.
const maxLoadAttempts = 8
