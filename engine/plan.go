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

// planLocked resolves the tier, gathers the limits that apply to c.req,
// prices the request against each at c.now, and rolls the payer's grant
// period (regranted). With screen set it first refuses what screenLocked
// refuses and, once priced, what tooLargeLocked and shedLocked refuse; it
// reports whether d is decided. Both paths plan with it: the local one
// (decideLocked) and the remote one before and after its round trip. The
// caller holds the locks of c.h.
func (c *charge) planLocked(d *Decision, screen bool) (decided bool, err error) {
	if screen && c.screenLocked(d) {
		return true, nil
	}
	if !screen {
		c.tier = c.rs.resolveTier(c.static, c.h.st.prof)
	}
	c.n = 0
	if err := c.collectLocked(); err != nil {
		return true, err
	}
	c.checkLocked()
	if screen && (c.tooLargeLocked(d) || c.shedLocked(d)) {
		return true, nil
	}
	owner, grant, ownerKey := c.balanceOwnerLocked()
	d.BalanceOwner, d.Cost = ownerKey, c.cost
	c.regranted = rollGrantLocked(owner, grant, c.now, c.rs.loc)
	return false, nil
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

// authorityPlanLocked describes the planned limits of c and the balance
// of owner (its key ownerKey, its grant g) as a Plan for the Authority;
// cost is what the request costs (zero for Status). The caller holds the
// locks of the states it reads.
func (c *charge) authorityPlanLocked(owner *subjectState, g TokenGrant, ownerKey string, cost int64) *Plan {
	p := &Plan{Tag: c.req.Subject, Now: time.Unix(0, c.now), Counters: make([]PlanCounter, c.n)}
	if c.h.ts != nil {
		p.Tag = c.h.team.key
	}
	for i := range c.n {
		p.Counters[i] = c.counterLocked(&c.lims[i])
	}
	p.Balance = PlanBalance{Owner: ownerKey, Cost: cost, Unlimited: g.Unlimited,
		StartingCredits: c.rs.startingCredits(ownerKey)}
	if g.Amount > 0 && !g.Unlimited {
		p.Balance.Grant, p.Balance.PeriodStart = g.Amount, time.Unix(0, owner.grantStart)
		if owner.grantEnd != 0 {
			p.Balance.PeriodEnd = time.Unix(0, owner.grantEnd)
		}
	}
	return p
}

// counterLocked describes a's window for the Plan. The caller holds the
// lock of a's owner.
func (c *charge) counterLocked(a *applied) PlanCounter {
	ws := a.ws()
	pc := PlanCounter{Owner: c.ownerKey(a.owner), Limit: a.rule.key,
		Start: time.Unix(0, ws.start), End: time.Unix(0, ws.end), ExpireAt: time.Unix(0, ws.end),
		Max: a.max, Amount: a.amount}
	if a.rule.mode == WindowSliding {
		pc.PrevStart = time.Unix(0, windowStart(ws.start-1, a.rule.period, c.rs.loc))
		pc.ExpireAt = time.Unix(0, ws.end+(ws.end-ws.start))
	}
	return pc
}

func (c *charge) ownerKey(owner *subjectState) string {
	if owner == c.h.st {
		return c.req.Subject
	}
	return c.h.team.key
}
