package engine

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Authority holds the window counters and balances that several replicas
// share (store/redis implements it). The engine resolves everything local
// and cheap (tier, roles, limits, cost, features, shedding) from its
// ruleset and cached profile, builds a Plan, and asks the Authority to
// execute it atomically: check every counter and the balance, then charge
// all of them or none. Implementations must be safe for concurrent use and
// must never retry a charge whose outcome is unknown.
type Authority interface {
	// Charge executes p atomically. An error means the outcome is unknown
	// (the charge may or may not have been applied); the caller applies the
	// tier's failure mode and does not retry.
	Charge(ctx context.Context, p *Plan) (PlanResult, error)
	// Status reads the counters and the balance of p without charging
	// anything; the amounts and cost of p are ignored.
	Status(ctx context.Context, p *Plan) (PlanResult, error)
	// AddCredits adds delta to the credits of b.Owner, under the hash tag
	// tag, unless they would fall below zero (ok == false, nothing changed).
	AddCredits(ctx context.Context, tag string, b PlanBalance, delta int64) (r CreditResult, err error)
}

// StateMover is implemented by an Authority whose keys are grouped by a
// hash tag (store/redis: a team member's keys carry the team's tag). When
// a subject's tag changes (SetProfile or Reload gives it another team that
// keeps state, or none), the engine moves its state from the old tag to
// the new one before the change takes effect, and refuses the change when
// the move fails. MoveState must be idempotent.
type StateMover interface {
	MoveState(ctx context.Context, subject, from, to string) error
}

// tagFor returns the hash tag of subject's keys under rs with profile
// prof (nil: none): its team's key when it belongs to a team that keeps
// state, else the subject id (as planLocked builds Plan.Tag for a request
// that names no team).
func (rs *ruleset) tagFor(subject string, prof *profileState) string {
	req := Request{Subject: subject}
	if t := rs.teams[rs.teamFor(&req, rs.users[subject], prof)]; t.needsState() {
		return t.key
	}
	return subject
}

// moveTags moves the state of every subject whose hash tag differs
// between old and rs (static users and team members; profiles aside) when
// the Authority is a StateMover, before rs takes effect.
func (e *Engine) moveTags(ctx context.Context, old, rs *ruleset) error {
	m, ok := e.auth.(StateMover)
	if !ok || e.auth == nil || old == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, set := range []*ruleset{old, rs} {
		for subject := range set.users {
			seen[subject] = true
		}
		for subject := range set.teamOf {
			seen[subject] = true
		}
	}
	for subject := range seen {
		if from, to := old.tagFor(subject, nil), rs.tagFor(subject, nil); from != to {
			if err := m.MoveState(ctx, subject, from, to); err != nil {
				return fmt.Errorf("engine: move the state of %q from tag %q to %q for its new team: %w; nothing changed, retry when the authority answers", subject, from, to, err)
			}
		}
	}
	return nil
}

// Plan is what one request needs from the Authority.
type Plan struct {
	// Tag groups the keys of one request so that they live in one Redis
	// Cluster slot: the team key ("team:<name>") when the subject belongs
	// to a team that keeps state, else the subject id. A subject's keys
	// always carry the same tag, whatever the request.
	Tag string
	// Now is the time of the decision.
	Now time.Time
	// Counters are the window counters to check and charge.
	Counters []PlanCounter
	// Balance is the token balance to check and charge; a zero Owner
	// means no balance is involved.
	Balance PlanBalance
	// Pending, when set, is the pending decision to record with the
	// charge if it is admitted, for a Settler (settle.go). The Authority
	// may rewrite Pending.Record.ID (its random bits) so that its own
	// Settle can find the record from the id alone; the decision takes
	// the id it leaves there.
	Pending *PlanPending
}

// PlanCounter is one window counter of a Plan.
type PlanCounter struct {
	// Owner is the subject id or "team:<name>"; Limit is the limit's name.
	Owner, Limit string
	// Start and End bound the current window.
	Start, End time.Time
	// PrevStart is the start of the window before, for a sliding limit;
	// zero for a fixed one.
	PrevStart time.Time
	// ExpireAt is when the counter may be dropped: End for a fixed window,
	// End plus one window length for a sliding one (it weighs in the next
	// window's estimate).
	ExpireAt time.Time
	// Max is the effective maximum and Amount what the request adds.
	Max, Amount int64
}

// Sliding reports whether the counter's previous window weighs in.
func (pc *PlanCounter) Sliding() bool { return !pc.PrevStart.IsZero() }

// PlanBalance is the balance part of a Plan.
type PlanBalance struct {
	// Owner is the key that pays: the subject id or "team:<name>". Empty
	// means no balance is involved.
	Owner string
	// Cost is what the request costs, in tokens.
	Cost int64
	// Grant is the allowance at the start of every grant period (zero: no
	// grant), PeriodStart the start of the current period and PeriodEnd
	// its end (zero when unknown).
	Grant                  int64
	PeriodStart, PeriodEnd time.Time
	// Unlimited means the cost is never refused nor deducted.
	Unlimited bool
	// StartingCredits are the owner's credits when it was never seen.
	StartingCredits int64
}

// PlanResult is the Authority's answer to a Plan.
type PlanResult struct {
	// Allowed reports whether everything was charged.
	Allowed bool
	// Refused is the index in Plan.Counters of the counter that refused
	// the request, or -1.
	Refused int
	// Short reports that the balance refused the request.
	Short bool
	// Current and Previous are, per counter, the usage of its current and
	// previous window after the decision.
	Current, Previous []int64
	// Allowance and Credits are the balance after the decision.
	Allowance, Credits int64
	// Cached reports that the answer came from blocks this replica
	// reserved earlier (leased mode), without a round trip: Allowance and
	// Credits are then unknown and the engine keeps its cached balance.
	Cached bool
}

// CreditResult is the outcome of Authority.AddCredits.
type CreditResult struct {
	// OK is false when the credits would have gone below zero, or (Capped)
	// above MaxCredits; nothing was changed then.
	OK, Capped         bool
	Allowance, Credits int64
}

// decideRemote decides c.req through the Authority. On entry the locks of
// c.h are held; it releases them before the round trip, so nothing slow
// happens under a lock. A window the local cache already knows to be full
// refuses the request without a round trip: counters only grow within a
// window, so a cached count is never above the authority's.
func (c *charge) decideRemote(ctx context.Context, d *Decision) error {
	e := c.e
	if err := c.refreshProfileLocked(ctx); err != nil {
		return err
	}
	// The scratch list must survive the unlocked round trip.
	c.lims = new([MaxLimitsPerRequest]applied)
	plan, decided, err := c.planLocked(d)
	if decided || err != nil {
		snaps := c.finishLocked(nil)
		e.release(ctx, c.h.si, c.h.ti)
		c.emit()
		if err != nil {
			return err
		}
		return c.syncSave(ctx, snaps)
	}
	c.planPendingLocked(d, plan)
	e.release(ctx, c.h.si, c.h.ti)
	res, err := e.auth.Charge(ctx, plan)
	if plan.Pending != nil {
		d.ID = plan.Pending.Record.ID
	}
	if err != nil && c.probing {
		// The outage goes on: the cached windows decide, as before the ask.
		if refused, rerr := c.refuseCached(ctx, d); refused || rerr != nil {
			return rerr
		}
	}
	if err != nil {
		if d.FailureMode == FailOpen {
			c.countOpen(ctx, d)
		}
		return fmt.Errorf("engine: charge %q through the authority: %w", c.req.Subject, err)
	}
	if err := e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h); err != nil {
		return err
	}
	if err := c.applyLocked(d, plan, &res); err != nil {
		e.release(ctx, c.h.si, c.h.ti)
		return err
	}
	snaps := c.finishLocked(nil)
	e.release(ctx, c.h.si, c.h.ti)
	c.emit()
	return c.syncSave(ctx, snaps)
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
	if _, err := c.collectRemoteLocked(&scratch, false); err == nil {
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
// fail-open admissions included, still bound the subject. It reports
// refused == false, deciding nothing, when the windows no longer refuse
// (they rolled meanwhile): the failed call then counts as any other.
func (c *charge) refuseCached(ctx context.Context, d *Decision) (refused bool, err error) {
	e := c.e
	if err := e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h); err != nil {
		return false, err
	}
	if _, err := c.collectRemoteLocked(d, false); err != nil {
		e.release(ctx, c.h.si, c.h.ti)
		return false, err
	}
	for i := range c.n {
		refused = refused || c.lims[i].refused
	}
	if !refused {
		e.release(ctx, c.h.si, c.h.ti)
		return false, nil
	}
	c.refuseFromCacheLocked(d)
	snaps := c.finishLocked(nil)
	e.release(ctx, c.h.si, c.h.ti)
	c.emit()
	return true, c.syncSave(ctx, snaps)
}

// refuseFromCacheLocked fills d with the refusal of the cached windows.
// The caller holds the locks of c.h.
func (c *charge) refuseFromCacheLocked(d *Decision) {
	c.denyWindowLocked(d)
	c.fillBalanceLocked(d)
	c.statusesLocked(d)
}

// collectRemoteLocked resolves the tier and gathers and prices the limits
// against the cached counters. With screen set it first refuses what
// screenLocked refuses; it reports whether d is decided already. The
// caller holds the locks of c.h.
func (c *charge) collectRemoteLocked(d *Decision, screen bool) (bool, error) {
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
	rollGrantLocked(owner, grant, c.now, c.rs.loc)
	return false, nil
}

// planLocked builds the Plan of c.req, or decides it locally (decided ==
// true) when a cached window already refuses it. Reservations (max_delay)
// are not made through an Authority: such a request is refused. The caller
// holds the locks of c.h.
func (c *charge) planLocked(d *Decision) (p *Plan, decided bool, err error) {
	if done, err := c.collectRemoteLocked(d, true); done || err != nil {
		return nil, true, err
	}
	if c.probeLocked() {
		c.refuseFromCacheLocked(d)
		return nil, true, nil
	}
	p = &Plan{Tag: c.req.Subject, Now: time.Unix(0, c.now), Counters: make([]PlanCounter, c.n)}
	if c.h.ts != nil {
		p.Tag = c.h.team.key
	}
	for i := range c.n {
		p.Counters[i] = c.counterLocked(&c.lims[i])
	}
	owner, grant, ownerKey := c.balanceOwnerLocked()
	p.Balance = PlanBalance{Owner: ownerKey, Cost: c.cost, Unlimited: grant.Unlimited,
		StartingCredits: c.rs.startingCredits(ownerKey)}
	if grant.Amount > 0 && !grant.Unlimited {
		p.Balance.Grant, p.Balance.PeriodStart = grant.Amount, time.Unix(0, owner.grantStart)
		if owner.grantEnd != 0 {
			p.Balance.PeriodEnd = time.Unix(0, owner.grantEnd)
		}
	}
	return p, false, nil
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

// applyLocked copies the authority's counts into the cached state and
// fills d from res. The limits are collected again, since the state may
// have been evicted or changed while unlocked; they are matched to the
// Plan by owner, name and window. The caller holds the locks of c.h.
func (c *charge) applyLocked(d *Decision, p *Plan, res *PlanResult) error {
	// Not screened again: the authority has decided, and a shedding or
	// feature verdict now would refuse a request that was charged.
	if _, err := c.collectRemoteLocked(d, false); err != nil {
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
	c.fillBalanceLocked(d)
	c.statusesLocked(d)
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

// denyBalanceLocked fills a refusal for lack of tokens.
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

// fillBalanceLocked sets the balance fields of d from the cached owner.
func (c *charge) fillBalanceLocked(d *Decision) {
	owner, grant, _ := c.balanceOwnerLocked()
	setBalanceLocked(d, owner, grant, c.rs.loc)
}

// addCreditsRemote is AddCredits through the Authority: the credits live
// there, and the cached state only mirrors them.
func (e *Engine) addCreditsRemote(ctx context.Context, rs *ruleset, key string, delta int64) (int64, error) {
	st, i, err := e.lockKey(ctx, rs, key)
	if err != nil {
		return 0, err
	}
	name, isTeam := strings.CutPrefix(key, teamKeyPrefix)
	tag := key
	var g TokenGrant
	if isTeam {
		g = rs.teams[name].grant
	} else {
		u := rs.users[key]
		req := Request{Subject: key}
		g = rs.resolveTier(rs.staticTier(&req, u), st.prof).grant
		if t := rs.teams[rs.teamFor(&req, u, st.prof.usableOrNilLocked(rs, key))]; t.needsState() {
			tag = t.key
		}
	}
	rollGrantLocked(st, g, e.now().UnixNano(), rs.loc)
	if delta > 0 {
		// The cached credits mirror the authority's as of the last call:
		// a bound the cache already passes is refused without a call.
		if err := checkCredits(key, st.credits, delta); err != nil {
			e.release(ctx, i, -1)
			return 0, err
		}
	}
	b := PlanBalance{Owner: key, Unlimited: g.Unlimited, StartingCredits: rs.startingCredits(key)}
	if g.Amount > 0 && !g.Unlimited {
		b.Grant, b.PeriodStart = g.Amount, time.Unix(0, st.grantStart)
	}
	e.release(ctx, i, -1)
	r, err := e.auth.AddCredits(ctx, tag, b, delta)
	if err != nil {
		return 0, fmt.Errorf("engine: add %d credits to %q through the authority: %w", delta, key, err)
	}
	if st, i, err = e.lockKey(ctx, rs, key); err == nil {
		st.allowance, st.credits = r.Allowance, r.Credits
		e.release(ctx, i, -1)
	}
	if r.Capped {
		return addSat(r.Allowance, r.Credits), creditsTooLarge(key, delta, r.Credits)
	}
	if !r.OK {
		return addSat(r.Allowance, r.Credits), fmt.Errorf("engine: add %d credits to %q: %w: it has %d credits, so the smallest delta allowed is -%d",
			delta, key, ErrNegativeBalance, r.Credits, r.Credits)
	}
	return addSat(r.Allowance, r.Credits), nil
}

// refreshRemote replaces the cached counters of c's limits and the balance
// of owner (whose key is ownerKey and grant g) with the authority's, for
// Status. c works on copies of the state, so no lock is held or needed.
func (c *charge) refreshRemote(ctx context.Context, owner *subjectState, g TokenGrant, ownerKey string) error {
	rollGrantLocked(owner, g, c.now, c.rs.loc)
	p := &Plan{Tag: c.req.Subject, Now: time.Unix(0, c.now), Counters: make([]PlanCounter, c.n)}
	if c.h.ts != nil {
		p.Tag = c.h.team.key
	}
	for i := range c.n {
		p.Counters[i] = c.counterLocked(&c.lims[i])
	}
	p.Balance = PlanBalance{Owner: ownerKey, Unlimited: g.Unlimited, StartingCredits: c.rs.startingCredits(ownerKey)}
	if g.Amount > 0 && !g.Unlimited {
		p.Balance.Grant, p.Balance.PeriodStart = g.Amount, time.Unix(0, owner.grantStart)
	}
	res, err := c.e.auth.Status(ctx, p)
	if err != nil {
		return fmt.Errorf("engine: status of %q through the authority: %w", c.req.Subject, err)
	}
	for i := range min(c.n, len(res.Current), len(res.Previous)) {
		ws := c.lims[i].ws()
		ws.cur, ws.prev = res.Current[i], res.Previous[i]
	}
	owner.allowance, owner.credits = res.Allowance, res.Credits
	return nil
}
