package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// PendingState is the state of a PendingRecord.
type PendingState uint8

const (
	// PendingOpen: the decision waits for its settlement.
	PendingOpen PendingState = iota
	// PendingSettled: the decision was settled; the record remembers its
	// id until Expires, so that a resent entry is a duplicate.
	PendingSettled
	// PendingDropped: the record was dropped (aged out or evicted); a
	// store deletes it.
	PendingDropped
)

// PendingRecord is a pending decision, or the mark of a settled one, as
// a PendingStore keeps it.
type PendingRecord struct {
	ID    uuid.UUID
	State PendingState
	// Tag is the hash tag of the owner's keys in a shared Authority
	// (Plan.Tag); empty in a local engine.
	Tag string
	// DecidedAt is the decision's time; Expires when the record is
	// dropped (DecidedAt + PendingMaxAge while open, the settlement's
	// time + PendingMaxAge once settled).
	DecidedAt, Expires time.Time
	// Owner is the balance owner's key: the subject or "team:<name>".
	Subject, Team, Owner string
	Tier                 Tier
	Action, Workflow     string
	Units, Charged       int64
	// FromAllowance and FromCredits are what the charge took from the
	// owner's allowance (of the grant period starting at GrantStart) and
	// credits.
	FromAllowance, FromCredits int64
	GrantStart                 time.Time
	// Windows are the window counts to give back on a refund, recorded
	// when the action's rule refunds windows.
	Windows []PendingWindow
	Trace   TraceRef
}

// PendingWindow is one window count charged by a pending decision.
type PendingWindow struct {
	// Owner is the subject or "team:<name>"; Limit the limit's name.
	Owner, Limit string
	// Start is the start of the window that was charged.
	Start  time.Time
	Amount int64
}

// PendingStore is implemented by a Store that keeps pending decisions and
// settled ids across restarts (store/sqlite, MemoryStore). The engine
// hands it the records that changed with the snapshots of each Flush, and
// with the snapshots of each charge under SyncWrites, so that a record is
// committed together with the state its charge changed.
type PendingStore interface {
	// SavePending saves snaps as Save does, and recs, atomically: an open
	// or settled record replaces the one of its id, except that an open
	// one never replaces a settled one (saves may land out of order), and
	// a dropped one deletes it; records that expire at or before now are
	// deleted.
	SavePending(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now time.Time) error
	// LoadPending returns the records that expire after now.
	LoadPending(ctx context.Context, now time.Time) ([]PendingRecord, error)
}

// record returns r as a PendingRecord. A claimed record is open.
func (r *pendingRec) record() PendingRecord {
	pr := PendingRecord{ID: r.id, State: r.state, DecidedAt: time.Unix(0, r.at).UTC(), Expires: time.Unix(0, r.expires).UTC(),
		Subject: r.subject, Team: r.team, Owner: r.owner, Tier: r.tier, Action: r.action, Workflow: r.workflow,
		Units: r.units, Charged: r.charged, FromAllowance: r.fromAllowance, FromCredits: r.fromCredits,
		Windows: r.windows, Trace: r.trace}
	if r.grantStart != 0 {
		pr.GrantStart = time.Unix(0, r.grantStart).UTC()
	}
	if pr.State == pendingClaimed {
		pr.State = PendingOpen
	}
	return pr
}

// recFromRecord is the inverse of record, for records a store returned.
func recFromRecord(pr *PendingRecord) pendingRec {
	r := pendingRec{id: pr.ID, state: pr.State, at: pr.DecidedAt.UnixNano(), expires: pr.Expires.UnixNano(),
		subject: pr.Subject, team: pr.Team, owner: pr.Owner, tier: pr.Tier, action: pr.Action, workflow: pr.Workflow,
		units: pr.Units, charged: pr.Charged, fromAllowance: pr.FromAllowance, fromCredits: pr.FromCredits,
		windows: pr.Windows, trace: pr.Trace}
	if !pr.GrantStart.IsZero() {
		r.grantStart = pr.GrantStart.UnixNano()
	}
	return r
}

// PendingStats returns the pending-decision table's counters, after
// dropping the decisions that aged out by the engine's clock. It briefly
// locks each part of the table.
func (e *Engine) PendingStats() PendingStats { return e.pending.stats(e.now().UnixNano()) }

// RestorePending loads the pending decisions and settled ids that the
// Store (a PendingStore) kept, so that decisions made before a restart
// can be settled after it, exactly once. Call it once after New, before
// serving; it does nothing for a Store that keeps none. Records that
// expired meanwhile are not loaded; at most PendingSize are.
func (e *Engine) RestorePending(ctx context.Context) (int, error) {
	ps, ok := e.store.(PendingStore)
	if !ok {
		return 0, nil
	}
	now := e.now().UnixNano()
	recs, err := ps.LoadPending(ctx, time.Unix(0, now))
	if err != nil {
		return 0, err
	}
	// The table drops records in the order they were put.
	slices.SortFunc(recs, func(a, b PendingRecord) int { return a.Expires.Compare(b.Expires) })
	n := 0
	for i := range recs {
		if recs[i].State != PendingOpen && recs[i].State != PendingSettled {
			continue
		}
		r := recFromRecord(&recs[i])
		if r.expires <= now || e.pending.has(r.id) {
			continue
		}
		e.pending.put(&r, now)
		n++
	}
	return n, nil
}

var _ PendingStore = (*MemoryStore)(nil)

// SavePending saves snaps as Save does and applies recs (see
// PendingStore), under one lock.
func (m *MemoryStore) SavePending(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now time.Time) error {
	for i := range recs {
		if recs[i].ID == uuid.Nil {
			return fmt.Errorf("engine: save pending record %d of %d: the id is empty", i+1, len(recs))
		}
	}
	if err := m.Save(ctx, snaps); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pend == nil {
		m.pend = make(map[uuid.UUID]PendingRecord)
	}
	if now.Sub(m.pruned) >= time.Second { // at most once a second: it walks them all
		m.pruned = now
		for id, r := range m.pend {
			if !r.Expires.After(now) {
				delete(m.pend, id)
			}
		}
	}
	for _, r := range recs {
		if old, ok := m.pend[r.ID]; ok && old.State == PendingSettled && r.State == PendingOpen && old.Expires.After(now) {
			continue // a settled mark is never undone by an older save
		}
		if r.State == PendingDropped || !r.Expires.After(now) {
			delete(m.pend, r.ID)
			continue
		}
		r.Windows = slices.Clone(r.Windows)
		m.pend[r.ID] = r
	}
	return nil
}

// LoadPending returns copies of the records that expire after now.
func (m *MemoryStore) LoadPending(_ context.Context, now time.Time) ([]PendingRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PendingRecord, 0, len(m.pend))
	for _, r := range m.pend {
		if r.Expires.After(now) {
			r.Windows = slices.Clone(r.Windows)
			out = append(out, r)
		}
	}
	return out, nil
}
