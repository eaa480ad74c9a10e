package engine

import (
	"context"
	"slices"
	"sync"
	"time"
)

// MemoryStore is an in-memory Store: it keeps, per key, the snapshot with
// the highest Version. It is safe for concurrent use. Its state lives as
// long as the process.
type MemoryStore struct {
	mu    sync.Mutex
	snaps map[string]Snapshot
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{snaps: make(map[string]Snapshot)}
}

// Load returns a copy of the snapshot saved for key.
func (m *MemoryStore) Load(_ context.Context, key string) (Snapshot, bool, error) {
	m.mu.Lock()
	s, ok := m.snaps[key]
	m.mu.Unlock()
	if !ok {
		return Snapshot{}, false, nil
	}
	return s.clone(), true, nil
}

// Save stores a copy of each snapshot whose Version is higher than the one
// already stored for its key.
func (m *MemoryStore) Save(_ context.Context, snaps []Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range snaps {
		if old, ok := m.snaps[s.Key]; ok && old.Version >= s.Version {
			continue
		}
		m.snaps[s.Key] = s.clone()
	}
	return nil
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
