package engine

import (
	"context"
	"fmt"
)

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
		snap, ok, err := e.store.Load(ctx, key)
		e.loads.Add(1)
		if err != nil {
			e.storeErrors.Add(1)
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
