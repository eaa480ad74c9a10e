package engine

import (
	"context"
	"fmt"
)

// recordLocked bumps the versions of the states the decision changed and
// marks them dirty for the next Flush; with SyncWrites it snapshots them
// instead, for commit, or with a Deferrer hands them over (deferLocked)
// and returns none. The caller holds c.h's locks.
func (c *charge) recordLocked(d *Decision) []Snapshot {
	var snaps []Snapshot
	if c.mutSt {
		sh := &c.e.shards[c.h.si]
		sh.mutatedLocked(c.req.Subject, c.h.st)
		if c.e.syncWrites {
			snaps = append(snaps, c.h.st.snapshotLocked(c.req.Subject))
			c.h.st.dirty = false
		}
	}
	if c.mutTs && c.h.ts != nil {
		sh := &c.e.shards[c.h.ti]
		sh.mutatedLocked(c.h.team.key, c.h.ts)
		if c.e.syncWrites {
			snaps = append(snaps, c.h.ts.snapshotLocked(c.h.team.key))
			c.h.ts.dirty = false
		}
	}
	if len(snaps) > 0 && c.e.deferrer != nil {
		c.deferLocked(d, snaps)
		return nil
	}
	return snaps
}

// deferLocked hands snaps to the Deferrer and to the caller, in
// d.Unsaved, instead of saving them, and records them as saved: the
// Deferrer's Store answers for them from now on. It runs under c.h's
// locks, so that the Deferrer receives the snapshots of a key in the order
// of their versions. A PendingDeferrer takes the decision's pending record
// with them.
func (c *charge) deferLocked(d *Decision, snaps []Snapshot) {
	if pd := c.e.pendDeferrer; pd != nil && c.pend != nil {
		// The pending record is committed with the snapshots.
		pd.DeferPending(snaps, *c.pend)
		c.pend = nil
	} else {
		c.e.deferrer.Defer(snaps)
	}
	d.Unsaved = append(d.Unsaved, snaps...)
	for _, s := range snaps {
		st := c.h.st
		if s.Key != c.req.Subject {
			st = c.h.ts
		}
		st.savedVersion = max(st.savedVersion, s.Version)
	}
}

// commit is the step that makes a charge durable before Charge returns
// (SyncWrites): it saves the snapshots that recordLocked took, with the
// decision's pending record (recordPendingLocked) when the Store keeps
// them, and records them as saved; on failure the states are marked dirty
// again, and the record listed, so that the next Flush retries them.
// Without SyncWrites there is nothing to save: the next Flush saves the
// changed states. No lock is held on entry.
func (c *charge) commit(ctx context.Context, snaps []Snapshot) error {
	var recs []PendingRecord
	if c.pend != nil {
		recs = []PendingRecord{*c.pend}
	}
	if len(snaps) == 0 && len(recs) == 0 {
		return nil
	}
	err := c.e.saveStates(ctx, snaps, recs, c.now)
	c.e.lockPair(c.h.si, c.h.ti)
	if err != nil && c.pend != nil {
		c.pendForFlushLocked(c.pend.ID, c.pend.Owner)
	}
	for _, s := range snaps {
		st, sh := c.h.st, &c.e.shards[c.h.si]
		if s.Key != c.req.Subject {
			st, sh = c.h.ts, &c.e.shards[c.h.ti]
		}
		switch {
		case err != nil:
			sh.markDirtyLocked(s.Key, st)
		case st.savedVersion < s.Version:
			st.savedVersion = s.Version
		}
	}
	c.e.unlockPair(c.h.si, c.h.ti)
	if err != nil {
		return fmt.Errorf("engine: save state of %q: %w", c.req.Subject, err)
	}
	return nil
}
