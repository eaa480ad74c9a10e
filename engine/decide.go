package engine

import (
	"fmt"
	"time"
)

// decideLocal decides c.req into d with this engine as the authority:
// plan, verdict and charge all happen under the locks of c.h, which stay
// held.
func (c *charge) decideLocal(d *Decision) error {
	c.lims = &c.e.shards[c.h.si].scratch
	return c.decideLocked(d)
}

// decideLocked decides c.req into d and applies the charge. The caller
// holds the locks of c.h.
func (c *charge) decideLocked(d *Decision) error {
	if decided, err := c.planLocked(d, true); decided || err != nil {
		return err
	}
	owner, grant, _ := c.balanceOwnerLocked()
	if c.regranted {
		c.markMutated(owner)
	}
	short := d.Cost > 0 && !grant.Unlimited && balanceLocked(owner) < d.Cost
	refused, reserveAt := c.windowVerdictLocked(short)
	switch {
	case refused:
		c.denyWindowLocked(d)
	case short:
		c.denyBalanceLocked(d, owner, grant)
	default:
		c.admitLocked(d, owner, grant, reserveAt)
	}
	c.reportLocked(d)
	return nil
}

// screenLocked resolves the tier and priority into d and refuses the
// request when its plan lacks the feature or its units or cost exceed
// MaxQuantity. It reports whether d is decided. The caller holds the locks
// of c.h.
func (c *charge) screenLocked(d *Decision) bool {
	rs := c.rs
	c.tier = rs.resolveTier(c.static, c.h.st.prof)
	d.Tier, d.FailureMode, d.Team = c.tier.name, c.tier.failure, c.h.teamName
	d.Priority = c.tier.priority
	if c.wf != nil && c.wf.priority != nil {
		d.Priority = *c.wf.priority
	}
	if f := c.missingFeatureLocked(); f != "" {
		d.deny(ReasonFeatureNotInPlan, featureMessage(rs, f))
		d.RequiredTier = rs.requiredTier[f]
		return true
	}
	if c.tooBig {
		d.deny(ReasonRequestTooLarge, rs.msgs.RequestTooLarge)
		return true
	}
	return false
}

// shedLocked refuses the request when its priority is shed. It runs after
// tooLargeLocked, so that a request that can never fit is not told to
// retry. The caller holds the locks of c.h.
func (c *charge) shedLocked(d *Decision) bool {
	if c.e.shed(c.rs, d.Priority, c.now) {
		d.deny(ReasonShed, c.rs.msgs.Shed)
		d.RetryAfter = time.Second
		return true
	}
	return false
}

// tooLargeLocked refuses the request when it counts more against a limit
// than the limit's (scaled) maximum, so that no reset or wait can admit
// it: the binding limit is the first such one, and there is no RetryAfter.
// A calls limit never makes a request too large (every request counts
// one), its maximum of 0 refuses all requests as a window would. The
// caller holds the locks of c.h.
func (c *charge) tooLargeLocked(d *Decision) bool {
	for i := range c.n {
		a := &c.lims[i]
		if a.rule.unit == UnitCalls || a.amount <= a.max {
			continue
		}
		d.deny(ReasonRequestTooLarge, c.rs.msgs.RequestTooLarge)
		d.Cost = c.cost
		d.HasBinding, d.Binding = true, c.limitStatusLocked(a)
		d.Amount = a.amount
		for j := range c.n {
			d.limits[j] = c.limitStatusLocked(&c.lims[j])
		}
		d.nlimits = c.n
		return true
	}
	return false
}

func (d *Decision) deny(r Reason, msg string) {
	d.Allowed, d.Reason, d.Message = false, r, msg
}

func featureMessage(rs *ruleset, feature string) string {
	tier := string(rs.requiredTier[feature])
	if tier == "" {
		tier = "a plan that includes it"
	}
	return fmt.Sprintf(rs.msgs.FeatureNotInPlan, feature, tier)
}

// missingFeatureLocked returns the request's action or workflow if neither
// its tier nor any of its roles includes it, else "". The caller holds the
// subject's lock (the profile's roles count).
func (c *charge) missingFeatureLocked() string {
	for _, f := range [2]string{c.req.Action, c.req.Workflow} {
		if f != "" && !c.hasFeatureLocked(f) {
			return f
		}
	}
	return ""
}

// hasFeatureLocked reports whether the tier or a role includes feature f.
// The caller holds the subject's lock.
func (c *charge) hasFeatureLocked(f string) bool {
	if c.tier.features == nil || c.tier.features[f] {
		return true
	}
	for _, roles := range c.roleSourcesLocked() {
		for _, r := range roles {
			if rr := c.rs.roles[r]; rr != nil && rr.features[f] {
				return true
			}
		}
	}
	return false
}

// roleSourcesLocked returns the subject's roles: configured, asserted and
// run-time. The caller holds the subject's lock.
func (c *charge) roleSourcesLocked() [3][]string {
	var src [3][]string
	if c.user != nil {
		src[0] = c.user.roles
	}
	src[1] = c.req.Roles
	if p := c.h.st.prof; p.usableLocked(c.rs, c.req.Subject) {
		src[2] = p.p.Roles
	}
	return src
}

// windowVerdictLocked reports whether the windows refuse the request. When
// some limit refuses it now but all would admit it at a time T within the
// tier's max_delay and the request's deadline, it returns T instead: a
// reservation. short means the balance already refuses the request.
func (c *charge) windowVerdictLocked(short bool) (refused bool, reserveAt int64) {
	t := int64(0)
	for i := range c.n {
		if c.lims[i].refused {
			t = max(t, c.lims[i].fitAt)
		}
	}
	if t == 0 {
		return false, 0
	}
	maxDelay := int64(c.tier.maxDelay)
	if short || maxDelay <= 0 || t == never || t-c.now > maxDelay ||
		(!c.req.Deadline.IsZero() && t > c.req.Deadline.UnixNano()) {
		return true, 0
	}
	for i := range c.n {
		a := &c.lims[i]
		slot, ok := fitsAtLocked(a.ws(), t, a.rule.mode, a.rule.period, c.rs.loc, a.amount, a.max)
		if !ok {
			return true, 0
		}
		a.slot = slot
	}
	return false, t
}

// denyWindowLocked fills a window refusal: the binding limit is the refused
// one that frees up last, since only then can a retry succeed.
func (c *charge) denyWindowLocked(d *Decision) {
	d.deny(ReasonWindowExceeded, c.rs.msgs.Exceeded)
	bind := -1
	for i := range c.n {
		a := &c.lims[i]
		if !a.refused {
			continue
		}
		if bind < 0 || a.fitAt > c.lims[bind].fitAt {
			bind = i
		}
		if ws := a.ws(); !ws.breached {
			ws.breached = true
			c.markMutated(a.owner)
			c.eventLocked(EventBreach, d, a, 0)
		}
	}
	if t := c.lims[bind].fitAt; t != never {
		d.RetryAfter = time.Duration(t - c.now)
	}
	d.HasBinding = true
	d.Binding = c.limitStatusLocked(&c.lims[bind])
}

// denyBalanceLocked fills a refusal for lack of tokens, here or from the
// Authority's answer. The caller holds the locks of c.h.
func (c *charge) denyBalanceLocked(d *Decision, owner *subjectState, grant TokenGrant) {
	d.deny(ReasonInsufficientBalance, c.rs.msgs.InsufficientBalance)
	if t := balanceRetryLocked(owner, grant, d.Cost); t != never {
		d.RetryAfter = time.Duration(t - c.now)
	}
	if !owner.refusedSet || owner.refused != owner.grantStart {
		owner.refused, owner.refusedSet = owner.grantStart, true
		c.markMutated(owner)
		c.eventLocked(EventInsufficientBalance, d, nil, balanceLocked(owner))
	}
}

// admitLocked fills an admission and charges every limit and the balance,
// all at once. The caller holds the locks of c.h.
func (c *charge) admitLocked(d *Decision, owner *subjectState, grant TokenGrant, reserveAt int64) {
	d.Allowed, d.Reason = true, ReasonOK
	for i := range c.n {
		a := &c.lims[i]
		ws := a.ws()
		switch {
		case reserveAt == 0 || a.slot == 0:
			ws.cur += a.amount
		default:
			ws.next += a.amount
		}
		c.markMutated(a.owner)
	}
	if reserveAt != 0 {
		d.Delay = time.Duration(reserveAt - c.now)
	}
	d.Charged = d.Cost
	if d.Cost > 0 && !grant.Unlimited {
		c.fromAllowance = spendLocked(owner, d.Cost)
		c.fromCredits = d.Cost - c.fromAllowance
		c.markMutated(owner)
		if balanceLowLocked(owner, grant, c.rs.threshold) {
			owner.alerted, owner.alertedSet = owner.grantStart, true
			c.eventLocked(EventBalanceLow, d, nil, balanceLocked(owner))
		}
	}
	c.e.shards[c.h.si].meter.addLocked(c.now)
}

// reportLocked fills the balance and the limits of d, whatever the
// verdict. The caller holds the locks of c.h.
func (c *charge) reportLocked(d *Decision) {
	c.fillBalanceLocked(d)
	c.statusesLocked(d)
}

// fillBalanceLocked sets the balance fields of d from the cached owner.
func (c *charge) fillBalanceLocked(d *Decision) {
	owner, grant, _ := c.balanceOwnerLocked()
	setBalanceLocked(d, owner, grant, c.rs.loc)
}

// statusesLocked fills the decision's limits, its binding limit (for an
// admission or a balance refusal, the one with the least remaining: a
// balance refusal names it too, so that its answer carries the same
// RateLimit fields), its warning and the threshold events.
func (c *charge) statusesLocked(d *Decision) {
	best, bestRatio := -1, -1.0
	for i := range c.n {
		a := &c.lims[i]
		ls := c.limitStatusLocked(a)
		d.limits[i] = ls
		if (d.Allowed || d.Reason == ReasonInsufficientBalance) && (!d.HasBinding || ls.Remaining < d.Binding.Remaining) {
			d.Binding, d.HasBinding = ls, true
		}
		if !d.Allowed || ls.Limit <= 0 || !atLeastPercent(ls.Used, ls.Limit, c.rs.threshold) {
			continue
		}
		if ratio := float64(ls.Used) / float64(ls.Limit); ratio > bestRatio {
			best, bestRatio = i, ratio
		}
		if ws := a.ws(); !ws.warned {
			ws.warned = true
			c.markMutated(a.owner)
			c.eventLocked(EventThreshold, d, a, 0)
		}
	}
	d.nlimits = c.n
	if best >= 0 {
		d.Warning = c.lims[best].rule.warning
	}
}

// limitStatusLocked describes a's window at now.
func (c *charge) limitStatusLocked(a *applied) LimitStatus {
	ws := a.ws()
	used := usedLocked(ws, c.now, a.rule.mode)
	ls := LimitStatus{Name: a.rule.key, Period: a.rule.period, Limit: a.max, Used: used,
		Remaining: max(a.max-used, 0)}
	reset := ws.end
	if a.rule.mode == WindowSliding {
		reset = slidingResetLocked(ws, c.now, used)
	}
	ls.Reset = time.Unix(0, reset).In(c.rs.loc)
	return ls
}

// slidingResetLocked returns when the sliding estimate of ws next drops
// below used: while the previous window still weighs, when its weight
// loses one unit; else at the window's end.
func slidingResetLocked(ws *windowState, now, used int64) int64 {
	if ws.prev <= 0 || used <= 0 {
		return ws.end
	}
	r := used - 1 - ws.cur
	if r < 0 {
		return ws.end
	}
	return max(now, ws.end-mulDiv(r, ws.end-ws.start, ws.prev))
}

// markMutated records that owner changed; the version bump and dirty
// marking happen once, in recordLocked (commit.go).
func (c *charge) markMutated(owner *subjectState) {
	if owner == c.h.st {
		c.mutSt = true
	} else {
		c.mutTs = true
	}
}
