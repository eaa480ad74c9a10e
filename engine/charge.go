package engine

import (
	"fmt"
	"time"
)

// applied is one limit that applies to a request.
type applied struct {
	rule    *limitRule
	owner   *subjectState
	idx     int   // window index in owner.windows
	amount  int64 // what this request counts against it
	max     int64 // effective maximum (capacity factor applied)
	fitAt   int64 // when a refused request would fit (unix ns), or never
	slot    int   // window a reservation is charged to: 0 current, 1 next
	refused bool
}

func (a *applied) ws() *windowState { return &a.owner.windows[a.idx] }

// charge is the scratch space of one decision. It lives on the stack, so
// a decision for a cached subject allocates nothing.
type charge struct {
	e   *Engine
	rs  *ruleset
	req Request
	// Looked up before locking: the configured user, the workflow, the
	// tier without the profile, and the request's token cost.
	user   *userRules
	wf     *workflowRules
	static *tierRules
	cost   int64
	// tooBig is set when the request's units or cost exceed MaxQuantity.
	tooBig bool
	now    int64
	h      held
	tier   *tierRules
	factor float64
	// lims is the scratch list of applied limits: the subject shard's own
	// (guarded by its lock, so a decision does not zero 1 KiB of stack),
	// or a private one for Status.
	lims *[MaxLimitsPerRequest]applied
	n    int
	// evs holds the events of this decision; the rare decision with more
	// spills into more (events are few: one per limit and window at most).
	evs  [2]Event
	nev  int
	more []Event
	// mutated records which of the subject and team states changed.
	mutSt, mutTs bool
	// allActions collects limits whatever their actions (Status).
	allActions bool
	// probing is set when a window full only through fail-open counting
	// let the request go to the Authority (decideRemote).
	probing bool
	// badProfile is the problem of the subject's stored profile, to be
	// logged once the locks are released; the profile was ignored.
	badProfile error
	// fromGrant is the part of the charged cost taken from the allowance
	// (the rest came from credits), for the decision's settlement.
	fromGrant int64
}

// prepare looks up what the request needs from the ruleset, before any
// lock is taken.
func (c *charge) prepare() {
	c.user = c.rs.users[c.req.Subject]
	c.wf = c.rs.workflows[c.req.Workflow]
	c.static = c.rs.staticTier(&c.req, c.user)
	var ok bool
	c.cost, ok = c.rs.cost(&c.req)
	c.tooBig = !ok
}

// decideLocked decides c.req into d and applies the charge. The caller
// holds the locks of c.h.
func (c *charge) decideLocked(d *Decision) error {
	rs := c.rs
	if c.screenLocked(d) {
		return nil
	}
	if err := c.collectLocked(); err != nil {
		return err
	}
	c.checkLocked()
	if c.tooLargeLocked(d) || c.shedLocked(d) {
		return nil
	}
	owner, grant, ownerKey := c.balanceOwnerLocked()
	d.BalanceOwner = ownerKey
	if rollGrantLocked(owner, grant, c.now, rs.loc) {
		c.markMutated(owner)
	}
	d.Cost = c.cost
	short := d.Cost > 0 && !grant.Unlimited && balanceLocked(owner) < d.Cost
	refused, reserveAt := c.windowVerdictLocked(short)
	switch {
	case refused:
		c.denyWindowLocked(d)
	case short:
		d.deny(ReasonInsufficientBalance, rs.msgs.InsufficientBalance)
		if t := balanceRetryLocked(owner, grant, d.Cost); t != never {
			d.RetryAfter = time.Duration(t - c.now)
		}
		if !owner.refusedSet || owner.refused != owner.grantStart {
			owner.refused, owner.refusedSet = owner.grantStart, true
			c.markMutated(owner)
			c.eventLocked(EventInsufficientBalance, d, nil, balanceLocked(owner))
		}
	default:
		c.commitLocked(d, owner, grant, reserveAt)
	}
	setBalanceLocked(d, owner, grant, c.rs.loc)
	c.statusesLocked(d)
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

// balanceOwnerLocked returns the state that pays, its grant and its key.
// The caller holds the locks of c.h.
func (c *charge) balanceOwnerLocked() (*subjectState, TokenGrant, string) {
	if t := c.h.team; t.pays() {
		return c.h.ts, t.grant, t.key
	}
	return c.h.st, c.tier.grant, c.req.Subject
}

// collectLocked gathers every limit that applies: tier limits not replaced
// by a user or profile limit of the same name, user and profile limits,
// role limits, workflow limits and team limits.
func (c *charge) collectLocked() error {
	rs, st := c.rs, c.h.st
	var user []limitRule
	if c.user != nil {
		user = c.user.limits
	}
	prof := st.prof.rulesLocked(rs, c.req.Subject)
	if err := st.prof.unloggedProblemLocked(); err != nil {
		c.badProfile = err
	}
	for i := range c.tier.limits {
		if r := &c.tier.limits[i]; !hasKey(user, r.key) && !hasKey(prof, r.key) {
			if err := c.addLocked(r, st); err != nil {
				return err
			}
		}
	}
	for i := range user {
		if !hasKey(prof, user[i].key) {
			if err := c.addLocked(&user[i], st); err != nil {
				return err
			}
		}
	}
	if err := c.addAllLocked(prof, st); err != nil {
		return err
	}
	for _, roles := range c.roleSourcesLocked() {
		for _, r := range roles {
			if rr := rs.roles[r]; rr != nil {
				if err := c.addAllLocked(rr.limits, st); err != nil {
					return err
				}
			}
		}
	}
	if c.wf != nil {
		if err := c.addAllLocked(c.wf.limits, st); err != nil {
			return err
		}
	}
	if t := c.h.team; t != nil && c.h.ts != nil {
		return c.addAllLocked(t.limits, c.h.ts)
	}
	return nil
}

func hasKey(rules []limitRule, key string) bool {
	for i := range rules {
		if rules[i].key == key {
			return true
		}
	}
	return false
}

// addAllLocked adds every rule in rules, counted in owner's state. The
// caller holds owner's lock.
func (c *charge) addAllLocked(rules []limitRule, owner *subjectState) error {
	for i := range rules {
		if err := c.addLocked(&rules[i], owner); err != nil {
			return err
		}
	}
	return nil
}

// addLocked appends r if it applies to the request's action and is not
// already in the list (a role held twice counts once). The caller holds
// owner's lock.
func (c *charge) addLocked(r *limitRule, owner *subjectState) error {
	if !c.allActions && !r.appliesTo(c.req.Action) {
		return nil
	}
	for i := range c.n {
		if c.lims[i].owner == owner && c.lims[i].rule.key == r.key {
			return nil
		}
	}
	if c.n == MaxLimitsPerRequest {
		return fmt.Errorf("%w: %q has more than %d limits for action %q", ErrTooManyLimits, c.req.Subject, MaxLimitsPerRequest, c.req.Action)
	}
	c.lims[c.n] = applied{rule: r, owner: owner, idx: owner.windowLocked(r.key)}
	c.n++
	return nil
}

// checkLocked rolls every window to now, prices the request against each
// limit and marks those it does not fit now.
func (c *charge) checkLocked() {
	cost := c.cost
	for i := range c.n {
		a := &c.lims[i]
		r := a.rule
		ws := a.ws()
		rollLocked(ws, c.now, r.period, c.rs.loc)
		switch r.unit {
		case UnitCalls:
			a.amount = 1
		case UnitUnits:
			a.amount = max(c.req.Units, 0)
		case UnitTokens:
			a.amount = cost
		}
		a.max = scaledMax(r.max, c.factor)
		if !fits(usedLocked(ws, c.now, r.mode), a.amount, a.max) {
			a.refused = true
			a.fitAt = fitTimeLocked(ws, c.now, r.mode, r.period, c.rs.loc, a.amount, a.max)
		}
	}
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

// commitLocked charges every limit and the balance, all at once.
func (c *charge) commitLocked(d *Decision, owner *subjectState, grant TokenGrant, reserveAt int64) {
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
		c.fromGrant = min(max(owner.allowance, 0), d.Cost)
		spendLocked(owner, d.Cost)
		c.markMutated(owner)
		if balanceLowLocked(owner, grant, c.rs.threshold) {
			owner.alerted, owner.alertedSet = owner.grantStart, true
			c.eventLocked(EventBalanceLow, d, nil, balanceLocked(owner))
		}
	}
	c.e.shards[c.h.si].meter.addLocked(c.now)
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
	return maxInt64(now, ws.end-mulDiv(r, ws.end-ws.start, ws.prev))
}
