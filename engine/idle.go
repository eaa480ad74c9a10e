package engine

import (
	"context"
	"strings"
)

// A state is idle when it carries nothing that fresh state would not: no
// run-time profile, no credits (and none to start with), no grant period
// still running, and no window whose counts would survive rolling to now.
// Dropping an idle state loses nothing: a subject that comes back gets
// fresh state, which decides every request as the idle state would have.
// Without this, a server without --data-dir kept every subject it ever saw
// in its MemoryStore.

// Forgetter is implemented by a Store that can drop state: the Engine
// forgets, instead of saving, a state that is idle when it is evicted, and
// Flush sweeps the stored states a little at a time for those that have
// become idle since. MemoryStore implements it; a durable store need not.
type Forgetter interface {
	// Forget drops the state stored for each key whose stored Version is
	// at most the given one; keys not stored are ignored.
	Forget(ctx context.Context, keys []KeyVersion) error
	// Sweep visits up to n stored states, continuing where the last
	// call stopped, and drops each one for which idle returns true. idle
	// must be quick and must not call the Store. It returns how many
	// states were visited and dropped.
	Sweep(n int, idle func(*Snapshot) bool) (visited, dropped int)
}

// KeyVersion names one version of one key's stored state.
type KeyVersion struct {
	Key     string
	Version uint64
}

// sweepBatch is how many stored states one Flush looks at for idle ones:
// at the default flush interval (100ms) a million stored states are swept
// in about 25 s, and no call holds the store's lock for long.
const sweepBatch = 4096

// indexPeriods records, for every window name, the periods of the limits
// that count in it (a name shared by several limits may roll with any of
// them), and the grant periods of every tier and team. compile calls it.
func (rs *ruleset) indexPeriods() {
	rs.periods = make(map[string][]Period)
	add := func(rules []limitRule) {
		for i := range rules {
			r := &rules[i]
			ps := rs.periods[r.key]
			found := false
			for _, p := range ps {
				found = found || p == r.period
			}
			if !found {
				rs.periods[r.key] = append(ps, r.period)
			}
		}
	}
	rs.everyTierGrants = true
	for _, t := range rs.tiers {
		add(t.limits)
		rs.noteGrant(t.grant)
		rs.everyTierGrants = rs.everyTierGrants && grantActive(t.grant)
	}
	for _, u := range rs.users {
		add(u.limits)
	}
	for _, r := range rs.roles {
		add(r.limits)
	}
	for _, w := range rs.workflows {
		add(w.limits)
	}
	for _, t := range rs.teams {
		add(t.limits)
		rs.noteGrant(t.grant)
	}
}

// noteGrant records the grant period of g, if g is active.
func (rs *ruleset) noteGrant(g TokenGrant) {
	if !grantActive(g) {
		return
	}
	p := grantPeriod(g)
	for _, q := range rs.grantPeriods {
		if q == p {
			return
		}
	}
	rs.grantPeriods = append(rs.grantPeriods, p)
}

// idleLocked reports whether st, the state of key, is idle at now (unix
// ns). The caller holds st's lock.
func (rs *ruleset) idleLocked(key string, st *subjectState, now int64) bool {
	if st.prof != nil || st.credits != 0 || rs.startingCredits(key) != 0 {
		return false
	}
	if !rs.allowanceIdle(key, st.allowance, st.grantSet, st.grantStart, st.grantEnd, now) {
		return false
	}
	for i := range st.windows {
		w := &st.windows[i]
		if !rs.windowIdle(w.key, w.start, w.end, w.cur, w.prev, w.next, w.warned || w.breached || w.probe != 0, now) {
			return false
		}
	}
	return true
}

// idleSnapshot is idleLocked for a stored snapshot.
func (rs *ruleset) idleSnapshot(s *Snapshot, now int64) bool {
	if !s.Profile.isZero() || s.Credits != 0 || rs.startingCredits(s.Key) != 0 {
		return false
	}
	var start, end int64
	if !s.AllowancePeriod.IsZero() {
		start = s.AllowancePeriod.UnixNano()
	}
	if !s.AllowanceEnd.IsZero() {
		end = s.AllowanceEnd.UnixNano()
	}
	if !rs.allowanceIdle(s.Key, s.Allowance, !s.AllowancePeriod.IsZero(), start, end, now) {
		return false
	}
	for i := range s.Windows {
		w := &s.Windows[i]
		var start int64
		if !w.Start.IsZero() {
			start = w.Start.UnixNano()
		}
		if !rs.windowIdle(w.Name, start, 0, w.Current, w.Previous, w.Next, w.Warned || w.Breached, now) {
			return false
		}
	}
	return true
}

// allowanceIdle reports whether the grant state of key (the allowance left
// of the grant period that started at start, if grantSet) is what fresh
// state would have at now: no period running, and either nothing left or
// a new grant certain to replace what is left on the next request. A tier
// without a grant spends a leftover allowance, so one is kept unless every
// tier (or the owning team) has a grant.
func (rs *ruleset) allowanceIdle(key string, allowance int64, grantSet bool, start, end, now int64) bool {
	if grantSet && !rs.grantOver(start, end, now) {
		return false
	}
	if allowance == 0 {
		return true
	}
	if team, ok := strings.CutPrefix(key, teamKeyPrefix); ok {
		t := rs.teams[team]
		return grantSet && t != nil && grantActive(t.grant)
	}
	return grantSet && rs.everyTierGrants
}

// grantOver reports whether the grant period that started at start (and
// ends at end, when known; 0 when not) is over at now, and no grant period
// of rs that starts at start is still running, so that the next request
// starts a fresh one whichever grant applies to it. Past end alone is not
// enough: rollGrantLocked keeps the allowance of a period that starts
// where the ended one did (a daily grant's period that started on the
// 1st, then a monthly one), and regrants it.
func (rs *ruleset) grantOver(start, end, now int64) bool {
	if now < start || (end != 0 && now < end) {
		return false
	}
	for _, p := range rs.grantPeriods {
		if now < windowEnd(windowStart(start, p, rs.loc), p, rs.loc) {
			return false
		}
	}
	return true
}

// windowIdle reports whether the window named key, with these counts, has
// nothing left once rolled to now under every period a limit of that name
// has. flagged is set when the window carries events already sent or an
// authority probe, which only a roll clears. end is 0 when not computed.
func (rs *ruleset) windowIdle(key string, start, end, cur, prev, next int64, flagged bool, now int64) bool {
	if start == 0 {
		return true
	}
	periods := rs.periods[key]
	if len(periods) == 0 {
		// No limit of that name: its counts matter only if one comes back.
		return cur == 0 && prev == 0 && next == 0 && !flagged
	}
	for _, p := range periods {
		e1 := end
		if e1 == 0 {
			e1 = windowEnd(start, p, rs.loc)
		}
		if now < e1 {
			return false // the window is current (or the clock went back)
		}
		e2 := windowEnd(e1, p, rs.loc)
		switch {
		case now < e2: // rolls once: cur becomes prev, next becomes cur
			if cur != 0 || next != 0 {
				return false
			}
		case now < windowEnd(e2, p, rs.loc): // rolls twice: next becomes prev
			if next != 0 {
				return false
			}
		}
	}
	return true
}

// idleAt reports whether the evicted state st of key may be dropped at
// the engine's current time. The caller holds the shard's lock.
func (e *Engine) idleAt(key string, st *subjectState) bool {
	rs := e.rules.Load()
	if rs == nil {
		return false
	}
	return rs.idleLocked(key, st, e.now().UnixNano())
}

// forgetter returns the Store as a Forgetter, or nil when it cannot
// forget. A wrapping Store must forward both methods.
func (e *Engine) forgetter() Forgetter {
	f, _ := e.store.(Forgetter)
	return f
}

// sweepStore drops up to sweepBatch stored states that have become idle.
func (e *Engine) sweepStore() {
	f := e.forgetter()
	if f == nil {
		return
	}
	rs := e.rules.Load()
	now := e.now().UnixNano()
	f.Sweep(sweepBatch, func(s *Snapshot) bool { return rs.idleSnapshot(s, now) })
}
