package engine

import "time"

// monthPeriod is the grant period of a TokenGrant that sets none.
var monthPeriod = Period{Calendar: CalendarMonth, Every: CalendarMonth.nominal()}

func grantPeriod(g TokenGrant) Period {
	if g.Period == (Period{}) {
		return monthPeriod
	}
	return g.Period
}

// rollGrantLocked sets the allowance of st to the grant's Amount at the
// start of every grant period (unused tokens do not carry over). Within a
// period, a grant whose Amount changed (a tier change through SetProfile
// or a reload, or a reload that changed the tier's grant) applies at once
// (regrantLocked).
//
// A grant period keeps the end it started with until that end, even if
// the grant that applies changes to one with another period; the end is
// saved with the state (Snapshot.AllowanceEnd), so that a state that was
// evicted and reloaded is decided as a cached one would be. After it, the
// period is that of the grant that applies, containing now; one that
// starts where the ended one did is the same period (a period is known by
// its start, as in Snapshot.AllowancePeriod and an Authority's balance),
// so its allowance is regranted, not refilled. A state saved without an
// end (by an older build) gets the end of the grant that applies.
//
// It does nothing for an inactive grant. It reports
// whether it changed what a snapshot of st holds: the caller must then
// count st as mutated, because a regrant is not always recomputed the same
// from the older snapshot (a clamped allowance forgets what was spent, and
// a tier without a grant spends the allowance as it is). The caller holds
// st's lock.
func rollGrantLocked(st *subjectState, g TokenGrant, now int64, loc *time.Location) (changed bool) {
	if !grantActive(g) {
		return false
	}
	if st.grantSet && st.grantEnd != 0 && now >= st.grantStart && now < st.grantEnd {
		return regrantLocked(st, g)
	}
	if st.grantSet && now < st.grantStart {
		return regrantLocked(st, g) // the clock went backwards: keep the period
	}
	p := grantPeriod(g)
	s := windowStart(now, p, loc)
	if !st.grantSet || s != st.grantStart {
		changed = true
		st.allowance = g.Amount
		st.grantAmount = grantMark(g)
		st.grantStart, st.grantSet = s, true
	} else {
		changed = regrantLocked(st, g)
	}
	end := windowEnd(s, p, loc)
	changed = changed || st.grantEnd != end
	st.grantEnd = end
	return changed
}

// grantMark is what subjectState.grantAmount records for g: its Amount,
// or -1 for an unlimited grant.
func grantMark(g TokenGrant) int64 {
	if g.Unlimited {
		return -1
	}
	return g.Amount
}

// regrantLocked applies grant g to the allowance of st within the current
// grant period when it differs from the grant the allowance was measured
// against. What was spent of the old grant this period stays spent: the
// allowance becomes the new Amount minus that, never below zero nor above
// the new Amount. So an upgrade brings the new plan's extra tokens at
// once, and a downgrade takes away what the new plan does not grant.
// Moving from or to an unlimited grant starts from the full new Amount
// (an unlimited grant counts no spending). Credits are never touched. An
// allowance whose grant is not known (a snapshot from an older build) is
// kept. It reports whether it changed st. The caller holds st's lock.
func regrantLocked(st *subjectState, g TokenGrant) (changed bool) {
	want := grantMark(g)
	switch old := st.grantAmount; {
	case old == want:
		return false
	case old == 0:
		// Unknown: keep the allowance, measured from now on against g.
	case old < 0 || want < 0:
		st.allowance = g.Amount
	default:
		spent := max(old-st.allowance, 0)
		st.allowance = min(max(g.Amount-spent, 0), g.Amount)
	}
	st.grantAmount = want
	return true
}

// balanceLocked is what st can spend: the allowance plus credits,
// saturated rather than wrapped (each is at most MaxQuantity unless a store
// returned more). The caller holds st's lock.
func balanceLocked(st *subjectState) int64 { return addSat(st.allowance, st.credits) }

// setBalanceLocked fills the balance fields of d from owner, whose grant
// is g. The caller holds owner's lock.
func setBalanceLocked(d *Decision, owner *subjectState, g TokenGrant, loc *time.Location) {
	d.HasBalance = d.Cost > 0 || grantActive(g) || owner.credits > 0
	d.Balance = balanceLocked(owner)
	if grantActive(g) && !g.Unlimited {
		d.Grant = g.Amount
		d.GrantPeriod = grantPeriod(g)
		if owner.grantSet && owner.grantEnd != 0 {
			d.Refill = time.Unix(0, owner.grantEnd).In(loc)
		}
	}
}

// spendLocked deducts cost, from the allowance first and then from credits,
// and returns what it took from the allowance. The caller has checked that
// the balance covers cost and holds st's lock.
func spendLocked(st *subjectState, cost int64) (fromAllowance int64) {
	a := max(min(st.allowance, cost), 0)
	st.allowance -= a
	st.credits -= cost - a
	return a
}

// balanceLowLocked reports whether the balance of st has fallen below the
// alert threshold of grant g (spent at least threshold percent of it) and
// no EventBalanceLow was sent in this grant period yet.
func balanceLowLocked(st *subjectState, g TokenGrant, threshold int64) bool {
	if g.Unlimited || g.Amount <= 0 || (st.alertedSet && st.alerted == st.grantStart) {
		return false
	}
	bal := balanceLocked(st)
	if bal >= g.Amount {
		return false
	}
	// g.Amount - bal cannot overflow: bal is at least 0 once spent from, and
	// clamping a negative bal to 0 only keeps the alert as it is.
	return atLeastPercent(g.Amount-max(bal, 0), g.Amount, threshold)
}

// balanceRetryLocked returns when a refused cost could be paid: at the next
// grant period if the new allowance plus credits covers it, else never.
func balanceRetryLocked(st *subjectState, g TokenGrant, cost int64) int64 {
	if !grantActive(g) || !st.grantSet || addSat(g.Amount, st.credits) < cost {
		return never
	}
	return st.grantEnd
}
