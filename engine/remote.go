package engine

import (
	"context"
	"fmt"
	"time"
)

// decideRemote decides c.req through the Authority. On entry the locks
// of c.h are held; it releases them for the round trip, so nothing slow
// happens under a lock, and takes them again to apply the answer. held
// reports whether they are held on return. A window the local cache
// already knows to be full refuses the request without a round trip:
// counters only grow within a window, so a cached count is never above
// the authority's.
func (c *charge) decideRemote(ctx context.Context, d *Decision) (held bool, err error) {
	e := c.e
	if err := c.refreshProfileLocked(ctx); err != nil {
		return false, err
	}
	// The scratch list must survive the unlocked round trip.
	c.lims = new([MaxLimitsPerRequest]applied)
	plan, decided, err := c.remotePlanLocked(d)
	if decided || err != nil {
		return true, err
	}
	c.planPendingLocked(d, plan)
	e.release(ctx, c.h.si, c.h.ti)
	res, err := e.auth.Charge(ctx, plan)
	if plan.Pending != nil {
		// The Authority may have rewritten the id's random bits (Plan.Pending).
		d.ID = plan.Pending.Record.ID
	}
	if err != nil {
		return c.authorityFailed(ctx, d, err)
	}
	if err := e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h); err != nil {
		return false, err
	}
	return true, c.applyLocked(d, plan, &res)
}

// remotePlanLocked builds the Plan of c.req, or decides it locally
// (decided == true) when it is refused before pricing or a cached window
// already refuses it. Reservations (max_delay) are not made through an
// Authority: such a request is refused. The caller holds the locks of c.h.
func (c *charge) remotePlanLocked(d *Decision) (p *Plan, decided bool, err error) {
	if decided, err := c.planLocked(d, true); decided || err != nil {
		return nil, true, err
	}
	if c.probeLocked() {
		c.refuseFromCacheLocked(d)
		return nil, true, nil
	}
	owner, grant, ownerKey := c.balanceOwnerLocked()
	return c.authorityPlanLocked(owner, grant, ownerKey, c.cost), false, nil
}

// probeLocked reports whether a cached window refuses c.req. A window
// that is full only through fail-open counting (windowState.probe) does
// not, once its probe is due: the request then asks the Authority, and the
// next probe is put off by openProbeEvery. The caller holds the locks of
// c.h.
func (c *charge) probeLocked() (refused bool) {
	c.probing = false
	for i := range c.n {
		a := &c.lims[i]
		if !a.refused {
			continue
		}
		if ws := a.ws(); ws.probe == 0 || c.now < ws.probe {
			return true
		}
	}
	for i := range c.n {
		if a := &c.lims[i]; a.refused {
			a.refused, c.probing = false, true
			a.ws().probe = c.now + int64(openProbeEvery)
		}
	}
	return false
}

// authorityFailed handles an Authority that could not charge (cause): a
// request that only probed a window full through fail-open counting is
// refused from the cache while it still is (refuseCached); otherwise a
// fail-open tier counts it in the cache (countOpen), and the error goes to
// the caller, whose failure mode applies. No lock is held on entry; held
// reports whether the locks of c.h are held on return.
func (c *charge) authorityFailed(ctx context.Context, d *Decision, cause error) (held bool, err error) {
	if c.probing {
		if held, err := c.refuseCached(ctx, d); held || err != nil {
			return held, err
		}
	}
	if d.FailureMode == FailOpen {
		c.countOpen(ctx, d)
	}
	return false, fmt.Errorf("engine: charge %q through the authority: %w", c.req.Subject, cause)
}

// countOpen counts a request that the tier's fail-open mode admits while
// the authority is unreachable in the cached window counters, so that a
// long outage still bounds usage: once a cached window is full, the
// subject is refused from the cache, at most every limit once per replica
// on top of what the authority counted. Such a window asks the authority
// once per openProbeEvery whether it is really full: a failed ask is
// refused from the cache, an answer replaces the cached counts, so a
// subject is decided by the authority again within a second of the
// outage's end, and nothing is charged twice. The balance is not charged
// locally. The decision in d is left as it is.
func (c *charge) countOpen(ctx context.Context, d *Decision) {
	e := c.e
	if err := e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h); err != nil {
		return
	}
	var scratch Decision
	scratch.FailureMode = d.FailureMode
	if _, err := c.planLocked(&scratch, false); err == nil {
		for i := range c.n {
			ws := c.lims[i].ws()
			ws.cur = addSat(ws.cur, c.lims[i].amount)
			ws.probe = c.now + int64(openProbeEvery)
		}
	}
	e.release(ctx, c.h.si, c.h.ti)
}

// openProbeEvery is how often a window that is full only through
// fail-open counting asks the Authority whether it really is (see
// windowState.probe): once the outage ends, such a subject is decided by
// the Authority's counts again within this time, rather than refused from
// the cache until the window resets.
const openProbeEvery = time.Second

// refuseCached refuses c.req from the cached windows after a probe (see
// windowState.probe) failed: the outage goes on, so the windows' counts,
// fail-open admissions included, still bound the subject. It returns with
// the locks of c.h held (held) when it refused d, or could not plan; it
// returns held == false and no error, deciding nothing, when the windows
// no longer refuse (they rolled meanwhile): the failed call then counts
// as any other.
func (c *charge) refuseCached(ctx context.Context, d *Decision) (held bool, err error) {
	e := c.e
	if err := e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h); err != nil {
		return false, err
	}
	if _, err := c.planLocked(d, false); err != nil {
		return true, err
	}
	refused := false
	for i := range c.n {
		refused = refused || c.lims[i].refused
	}
	if !refused {
		e.release(ctx, c.h.si, c.h.ti)
		return false, nil
	}
	c.refuseFromCacheLocked(d)
	return true, nil
}

// refuseFromCacheLocked fills d with the refusal of the cached windows.
// The caller holds the locks of c.h.
func (c *charge) refuseFromCacheLocked(d *Decision) {
	c.denyWindowLocked(d)
	c.reportLocked(d)
}

// applyLocked copies the authority's counts into the cached state and
// fills d from res. The limits are collected again, since the state may
// have been evicted or changed while unlocked; they are matched to the
// Plan by owner, name and window. The caller holds the locks of c.h.
func (c *charge) applyLocked(d *Decision, p *Plan, res *PlanResult) error {
	// Not screened again: the authority has decided, and a shedding or
	// feature verdict now would refuse a request that was charged.
	if _, err := c.planLocked(d, false); err != nil {
		return err
	}
	refused := -1
	for i := range c.n {
		a := &c.lims[i]
		a.refused = false
		j := c.matchCounter(p, a)
		if j < 0 || j >= len(res.Current) {
			continue
		}
		ws := a.ws()
		ws.cur, ws.probe = res.Current[j], 0
		if a.rule.mode == WindowSliding && j < len(res.Previous) {
			ws.prev = res.Previous[j]
		}
		if j == res.Refused {
			refused = i
		}
	}
	owner, grant, ownerKey := c.balanceOwnerLocked()
	if ownerKey == p.Balance.Owner && !res.Cached {
		owner.allowance, owner.credits = res.Allowance, res.Credits
	}
	switch {
	case res.Allowed:
		c.admitRemoteLocked(d, owner, grant)
	case res.Short:
		c.denyBalanceLocked(d, owner, grant)
	case refused >= 0:
		a := &c.lims[refused]
		a.refused = true
		a.fitAt = fitTimeLocked(a.ws(), c.now, a.rule.mode, a.rule.period, c.rs.loc, a.amount, a.max)
		c.denyWindowLocked(d)
	default:
		// The refusing limit changed while unlocked (a reload): no binding.
		d.deny(ReasonWindowExceeded, c.rs.msgs.Exceeded)
	}
	c.reportLocked(d)
	return nil
}

// matchCounter returns the index in p of a's counter, or -1.
func (c *charge) matchCounter(p *Plan, a *applied) int {
	owner, start := c.ownerKey(a.owner), a.ws().start
	for j := range p.Counters {
		pc := &p.Counters[j]
		if pc.Limit == a.rule.key && pc.Owner == owner && pc.Start.UnixNano() == start {
			return j
		}
	}
	return -1
}

// admitRemoteLocked fills an admission whose charge the authority applied.
func (c *charge) admitRemoteLocked(d *Decision, owner *subjectState, grant TokenGrant) {
	d.Allowed, d.Reason = true, ReasonOK
	d.Charged = d.Cost
	// The counters live in the authority: the cached copies are not
	// saved, only the alert marks are.
	if d.Cost > 0 && !grant.Unlimited && balanceLowLocked(owner, grant, c.rs.threshold) {
		owner.alerted, owner.alertedSet = owner.grantStart, true
		c.markMutated(owner)
		c.eventLocked(EventBalanceLow, d, nil, balanceLocked(owner))
	}
	c.e.shards[c.h.si].meter.addLocked(c.now)
}
