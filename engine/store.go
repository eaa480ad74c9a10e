package engine

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// MemoryStore is an in-memory Store: it keeps, per key, the snapshot with
// the highest Version. It is safe for concurrent use. Its state lives as
// long as the process. It is a Forgetter: an Engine drops the states that
// carry nothing from it (idle.go), so that it holds only states with live
// usage, credits or a profile.
type MemoryStore struct {
	mu    sync.Mutex
	snaps map[string]*memEntry
	keys  []string // every key, in no order; Sweep's cursor walks it
	next  int      // Sweep's cursor into keys
	// pend holds the pending records (PendingStore); nil until one is saved.
	pend   map[uuid.UUID]PendingRecord
	pruned time.Time // when expired records were last deleted
}

// memEntry is one stored snapshot and its place in MemoryStore.keys.
type memEntry struct {
	snap Snapshot
	at   int
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{snaps: make(map[string]*memEntry)}
}

// Load returns a copy of the snapshot saved for key.
func (m *MemoryStore) Load(_ context.Context, key string) (Snapshot, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	me, ok := m.snaps[key]
	if !ok {
		return Snapshot{}, false, nil
	}
	return me.snap.clone(), true, nil
}

// Save stores a copy of each snapshot whose Version is higher than the one
// already stored for its key.
func (m *MemoryStore) Save(_ context.Context, snaps []Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range snaps {
		old, ok := m.snaps[s.Key]
		switch {
		case !ok:
			m.snaps[s.Key] = &memEntry{snap: s.clone(), at: len(m.keys)}
			m.keys = append(m.keys, s.Key)
		case old.snap.Version < s.Version:
			old.snap = s.clone()
		}
	}
	return nil
}

// Forget drops the snapshot of each key whose stored Version is at most
// the given one.
func (m *MemoryStore) Forget(_ context.Context, keys []KeyVersion) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, kv := range keys {
		if me, ok := m.snaps[kv.Key]; ok && me.snap.Version <= kv.Version {
			m.removeLocked(me)
		}
	}
	return nil
}

// Sweep visits up to n snapshots, from where the last call stopped, and
// drops those for which idle returns true. idle runs under the store's
// lock.
func (m *MemoryStore) Sweep(n int, idle func(*Snapshot) bool) (visited, dropped int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for visited < n && len(m.keys) > 0 {
		if m.next >= len(m.keys) {
			m.next = 0
		}
		me := m.snaps[m.keys[m.next]]
		visited++
		if idle(&me.snap) {
			m.removeLocked(me) // moves the last key to m.next
			dropped++
			continue
		}
		m.next++
	}
	return visited, dropped
}

// removeLocked drops me, moving the last key into its place. The caller
// holds m.mu.
func (m *MemoryStore) removeLocked(me *memEntry) {
	last := len(m.keys) - 1
	moved := m.keys[last]
	m.keys[me.at] = moved
	m.snaps[moved].at = me.at
	m.keys[last] = ""
	m.keys = m.keys[:last]
	delete(m.snaps, me.snap.Key)
	if cap(m.keys) > 1024 && len(m.keys) < cap(m.keys)/4 {
		m.keys = slices.Clip(slices.Clone(m.keys)) // give most of the array back
	}
}

// Len returns how many keys the store holds.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.snaps)
}

// clone returns a deep copy of s.
func (s Snapshot) clone() Snapshot {
	s.Windows = slices.Clone(s.Windows)
	s.Profile = s.Profile.clone()
	return s
}

// clone returns a deep copy of p.
func (p Profile) clone() Profile {
	p.Roles = slices.Clone(p.Roles)
	p.Limits = slices.Clone(p.Limits)
	for i := range p.Limits {
		p.Limits[i].Actions = slices.Clone(p.Limits[i].Actions)
		if m := p.Limits[i].Mode; m != nil {
			mode := *m
			p.Limits[i].Mode = &mode
		}
	}
	return p
}

// isZero reports whether p overrides nothing.
func (p Profile) isZero() bool {
	return p.Tier == "" && p.Team == "" && len(p.Roles) == 0 && len(p.Limits) == 0
}

// snapshotLocked returns a copy of st for the Store. The caller holds st's
// lock.
func (st *subjectState) snapshotLocked(key string) Snapshot {
	s := Snapshot{
		Key:       key,
		Version:   st.version,
		Allowance: st.allowance,
		Grant:     st.grantAmount,
		Credits:   st.credits,
		Windows:   make([]WindowSnapshot, len(st.windows)),
	}
	if st.prof != nil {
		s.Profile = st.prof.p.clone()
	}
	if st.grantSet {
		s.AllowancePeriod = time.Unix(0, st.grantStart)
		if st.grantEnd != 0 {
			s.AllowanceEnd = time.Unix(0, st.grantEnd)
		}
	}
	if st.alertedSet {
		s.BalanceAlerted = time.Unix(0, st.alerted)
	}
	if st.refusedSet {
		s.BalanceRefused = time.Unix(0, st.refused)
	}
	for i, w := range st.windows {
		s.Windows[i] = WindowSnapshot{Name: w.key, Current: w.cur, Previous: w.prev, Next: w.next,
			Warned: w.warned, Breached: w.breached}
		if w.start != 0 {
			s.Windows[i].Start = time.Unix(0, w.start)
		}
	}
	return s
}

// stateFromSnapshot rebuilds a subject's state from s. Window ends are
// recomputed on first use, from the period of the limit that uses them.
// The grant period's end is restored rather than recomputed: after a tier
// change it may be that of the previous tier's grant period, which runs
// to its end (rollGrantLocked).
func stateFromSnapshot(s Snapshot) *subjectState {
	st := &subjectState{
		version:      s.Version,
		savedVersion: s.Version,
		allowance:    s.Allowance,
		grantAmount:  s.Grant,
		credits:      s.Credits,
	}
	if len(s.Windows) <= len(st.inline) {
		st.windows = st.inline[:len(s.Windows)]
	} else {
		st.windows = make([]windowState, len(s.Windows))
	}
	if !s.Profile.isZero() {
		st.prof = &profileState{p: s.Profile.clone()}
	}
	if !s.AllowancePeriod.IsZero() {
		st.grantStart, st.grantSet = s.AllowancePeriod.UnixNano(), true
		if !s.AllowanceEnd.IsZero() {
			st.grantEnd = s.AllowanceEnd.UnixNano()
		}
	}
	if !s.BalanceAlerted.IsZero() {
		st.alerted, st.alertedSet = s.BalanceAlerted.UnixNano(), true
	}
	if !s.BalanceRefused.IsZero() {
		st.refused, st.refusedSet = s.BalanceRefused.UnixNano(), true
	}
	for i, w := range s.Windows {
		st.windows[i] = windowState{key: w.Name, cur: w.Current, prev: w.Previous, next: w.Next,
			warned: w.Warned, breached: w.Breached}
		if !w.Start.IsZero() {
			st.windows[i].start = w.Start.UnixNano()
		}
	}
	return st
}
