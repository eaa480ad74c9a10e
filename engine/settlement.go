package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// recordPendingLocked holds an allowed decision as pending when its
// settlement could change something (SettleRule.holds). It runs in the
// record step of a charge (decideOnce), under the locks of c.h; the
// table's lock is a leaf. A decision made through an Authority is not
// held here: a Settler recorded it with the charge (planPendingLocked).
// A decision with nothing to refund windows for costs a copy into the
// table's slab and no allocation once the table has grown.
func (c *charge) recordPendingLocked(d *Decision) {
	if !d.Allowed || c.e.auth != nil {
		return
	}
	rule := c.rs.settleRule(c.req.Action)
	if !rule.holds(d.Charged, c.n) {
		return
	}
	t := c.e.pending
	r := pendingRec{id: d.ID, at: c.now, expires: c.now + t.maxAge, subject: c.req.Subject, team: d.Team,
		owner: d.BalanceOwner, tier: d.Tier, action: d.Action, workflow: d.Workflow, units: d.Units,
		charged: d.Charged, fromAllowance: c.fromAllowance, fromCredits: c.fromCredits, trace: c.req.Trace}
	if owner, _, _ := c.balanceOwnerLocked(); owner.grantSet {
		r.grantStart = owner.grantStart
	}
	if rule.RefundWindows && c.n > 0 {
		r.windows = make([]PendingWindow, c.n)
		for i := range c.n {
			a := &c.lims[i]
			ws := a.ws()
			start := ws.start
			if d.Delay > 0 && a.slot == 1 {
				start = ws.end
			}
			r.windows[i] = PendingWindow{Owner: c.ownerKey(a.owner), Limit: a.rule.key, Start: time.Unix(0, start), Amount: a.amount}
		}
	}
	t.put(&r, c.now)
	if !t.tracked {
		return
	}
	if c.e.syncWrites {
		// Saved with the charge's snapshots (commit), or committed with
		// them by the Deferrer; only a failed save leaves it to Flush.
		rec := r.record()
		c.pend = &rec
		return
	}
	c.pendForFlushLocked(r.id, r.owner)
}

// pendForFlushLocked lists the pending record id for the next Flush, to
// be saved with the snapshot of the state that paid (owner). The caller
// holds the locks of c.h.
func (c *charge) pendForFlushLocked(id uuid.UUID, owner string) {
	si := c.h.si
	if owner != c.req.Subject && c.h.ti >= 0 {
		si = c.h.ti
	}
	sp := &c.e.pendOf[si]
	sp.ids = append(sp.ids, id)
}

// Settle settles one decision at the engine's clock; see SettleAt.
func (e *Engine) Settle(ctx context.Context, s Settlement) (Settled, error) {
	return e.SettleAt(ctx, s, e.now())
}

// SettleAt settles the decision s.DecisionID from its response, at now,
// exactly once: by its action's SettleRule, it refunds the charge, or
// reprices it from the usage header and charges or refunds the
// difference. A duplicate, unknown or aged-out id is an outcome, not an
// error; an error means the settlement could not be applied (the Store
// could not load the state) and nothing changed, so the same entry may be
// settled again. A settlement never takes a balance below zero (the
// shortfall is Owed) nor gives it back more than it held before the
// charge; window counts are given back only while their window is the
// current one. With SyncWrites the changed state and the settled mark are
// saved before it returns; a failed save is counted in Stats.StoreErrors
// and retried at the next Flush. It is safe for concurrent use.
func (e *Engine) SettleAt(ctx context.Context, s Settlement, now time.Time) (Settled, error) {
	n := now.UnixNano()
	if sr, ok := e.auth.(Settler); ok && e.auth != nil {
		return e.settleRemote(ctx, sr, s, n)
	}
	r, out, ok := e.pending.claim(s.DecisionID, n)
	if !ok {
		return Settled{Outcome: out, DecisionID: s.DecisionID}, nil
	}
	rs := e.rules.Load()
	res := r.settled(rs)
	plan := planSettle(rs, &r, s, &res)
	if plan.refund != 0 || plan.extra != 0 || plan.windows {
		if err := e.applySettle(ctx, rs, &r, plan, &res, n); err != nil {
			e.pending.unclaim(s.DecisionID)
			return Settled{Outcome: res.Outcome, DecisionID: s.DecisionID}, err
		}
		return res, nil
	}
	e.pending.settled(s.DecisionID, n, false)
	return res, nil
}

// settled returns the Settled of r, with no outcome yet.
func (r *pendingRec) settled(rs *ruleset) Settled {
	return Settled{DecisionID: r.id, DecidedAt: time.Unix(0, r.at).In(rs.loc), Subject: r.subject, Team: r.team,
		Owner: r.owner, Tier: r.tier, Action: r.action, Workflow: r.workflow, Units: r.units, Charged: r.charged,
		Trace: r.trace}
}

// settlePlan is what a settlement changes: tokens to refund (billed) or
// to charge on top, and whether window counts are given back.
type settlePlan struct {
	refund, extra int64
	windows       bool
}

// planSettle decides the outcome of settling r with s under rs, into
// res, and returns what must change. It changes nothing.
func planSettle(rs *ruleset, r *pendingRec, s Settlement, res *Settled) settlePlan {
	rule := rs.settleRule(r.action)
	res.Outcome = SettleKept
	switch {
	case rule.Off:
	case rule.refunds(s.Status):
		res.Outcome = SettleRefund
		return settlePlan{refund: r.charged, windows: rule.RefundWindows && len(r.windows) > 0}
	case rule.UsageHeader != "":
		v, present := s.Headers[rule.UsageHeader]
		if !present {
			return settlePlan{}
		}
		units, ok := parseUsage(v)
		var cost int64
		if ok {
			a := rs.actions[r.action]
			cost, ok = priceOf(a.PerCall, a.PerThousand, units)
		}
		if !ok {
			res.Outcome = SettleInvalid
			return settlePlan{}
		}
		res.ActualUnits = units
		switch {
		case cost < r.charged:
			res.Outcome = SettleAdjust
			return settlePlan{refund: r.charged - cost}
		case cost > r.charged:
			res.Outcome = SettleAdjust
			return settlePlan{extra: cost - r.charged}
		}
	}
	return settlePlan{}
}

// applySettle applies plan to the states of r under their locks, and
// fills the amounts of res.
func (e *Engine) applySettle(ctx context.Context, rs *ruleset, r *pendingRec, plan settlePlan, res *Settled, now int64) error {
	other := r.owner
	if other == r.subject {
		other = ""
	}
	for _, w := range r.windows {
		if plan.windows && w.Owner != r.subject {
			other = w.Owner
		}
	}
	sa, sb, ia, ib, err := e.lockTwo(ctx, rs, r.subject, other)
	if err != nil {
		return fmt.Errorf("engine: settle %s of %q: %w", r.id, r.subject, err)
	}
	stateOf := func(key string) (*subjectState, int) {
		if key == r.subject {
			return sa, ia
		}
		if key == other {
			return sb, ib
		}
		return nil, -1
	}
	var ev Event
	emit := false
	if owner, oi := stateOf(r.owner); owner != nil {
		g, hasBalance := rs.settleGrant(r)
		changed := rollGrantLocked(owner, g, now, rs.loc)
		if plan.refund > 0 {
			res.Refunded = plan.refund
			if hasBalance {
				changed = giveBackLocked(owner, r, plan.refund) || changed
			}
		}
		if plan.extra > 0 {
			res.Extra = plan.extra
			if hasBalance && !g.Unlimited {
				take := min(plan.extra, max(balanceLocked(owner), 0))
				if take > 0 {
					spendLocked(owner, take)
					changed = true
				}
				res.Owed = plan.extra - take
				if balanceLowLocked(owner, g, rs.threshold) {
					owner.alerted, owner.alertedSet = owner.grantStart, true
					emit = e.events != nil
					ev = Event{Kind: EventBalanceLow, Time: time.Unix(0, now).In(rs.loc), Subject: r.subject, Team: r.team,
						Tier: r.tier, DecisionID: r.id, Balance: balanceLocked(owner)}
				}
			}
		}
		if changed {
			e.shards[oi].mutatedLocked(r.owner, owner)
		}
		res.Balance, res.HasBalance = balanceLocked(owner), hasBalance
	}
	if plan.windows {
		for _, w := range r.windows {
			st, si := stateOf(w.Owner)
			if st != nil && refundWindowLocked(st, w, now) {
				res.WindowsRefunded = true
				e.shards[si].mutatedLocked(w.Owner, st)
			}
		}
	}
	// The mark goes with the owner's state (or the subject's), under its
	// lock, so that a flush saves both or neither.
	e.pending.settled(r.id, now, e.pending.tracked)
	if e.pending.tracked {
		markShard := ia
		if r.owner == other && ib >= 0 {
			markShard = ib
		}
		e.pendOf[markShard].ids = append(e.pendOf[markShard].ids, r.id)
	}
	var snaps []Snapshot
	var mark PendingRecord
	if e.syncWrites {
		snaps = append(snaps, sa.snapshotLocked(r.subject))
		if sb != nil {
			snaps = append(snaps, sb.snapshotLocked(other))
		}
		mark = PendingRecord{ID: r.id, State: PendingSettled, DecidedAt: time.Unix(0, r.at).UTC(),
			Expires: time.Unix(0, now+e.pending.maxAge).UTC()}
		if e.deferrer != nil {
			e.deferSettleLocked(snaps, mark, sa, sb)
			res.Unsaved = snaps
		}
	}
	e.release(ctx, ia, ib)
	if emit {
		e.events.Emit(ev)
		e.eventsEmitted.Add(1)
	}
	if e.syncWrites && e.deferrer == nil {
		// A failed save is counted in Stats.StoreErrors; the states stay
		// dirty, so the next Flush saves them.
		_ = e.saveStates(ctx, snaps, []PendingRecord{mark}, now)
	}
	return nil
}

// deferSettleLocked hands a settlement's snapshots, and its settled mark
// to a PendingDeferrer, to the Deferrer, as deferLocked does a charge's:
// the caller commits them from Settled.Unsaved. The states stay dirty, so
// a Flush saves them too, after the commit (the Deferrer's Store orders
// saves of a key by version). The caller holds the locks of sa and sb.
func (e *Engine) deferSettleLocked(snaps []Snapshot, mark PendingRecord, sa, sb *subjectState) {
	if e.pendDeferrer != nil {
		e.pendDeferrer.DeferPending(snaps, mark)
	} else {
		e.deferrer.Defer(snaps)
	}
	for i, st := range []*subjectState{sa, sb} {
		if st != nil && i < len(snaps) {
			st.savedVersion = max(st.savedVersion, snaps[i].Version)
		}
	}
}

// settleGrant returns the grant of r's balance owner under rs, and
// whether the owner has a balance at all.
func (rs *ruleset) settleGrant(r *pendingRec) (TokenGrant, bool) {
	if name, isTeam := strings.CutPrefix(r.owner, teamKeyPrefix); isTeam {
		t := rs.teams[name]
		if !t.pays() {
			return TokenGrant{}, false
		}
		return t.grant, true
	}
	return rs.tierOf(r.tier).grant, true
}

// giveBackLocked gives back up to amount of what r took from owner:
// credits first (they never reset), then allowance, the latter only
// within the grant period it was taken from and never above the grant.
// It reports whether owner changed. The caller holds owner's lock.
func giveBackLocked(owner *subjectState, r *pendingRec, amount int64) bool {
	changed := false
	if c := min(amount, r.fromCredits); c > 0 {
		owner.credits = min(addSat(owner.credits, c), MaxCredits)
		amount -= c
		changed = true
	}
	if a := min(amount, r.fromAllowance); a > 0 && owner.grantSet && owner.grantStart == r.grantStart {
		limit := MaxQuantity
		if owner.grantAmount > 0 {
			limit = owner.grantAmount
		}
		if na := min(addSat(owner.allowance, a), limit); na > owner.allowance {
			owner.allowance = na
			changed = true
		}
	}
	return changed
}

// refundWindowLocked gives w's count back to st's window of the same
// name when the window charged is still the current one (or, for a
// reservation, still the next one). The caller holds st's lock.
func refundWindowLocked(st *subjectState, w PendingWindow, now int64) bool {
	start := w.Start.UnixNano()
	for i := range st.windows {
		ws := &st.windows[i]
		if ws.key != w.Limit {
			continue
		}
		inCurrent := ws.start == start && (ws.end == 0 || now < ws.end)
		inNext := ws.end != 0 && ws.end == start && now < ws.end
		switch {
		case inCurrent && ws.cur > 0:
			ws.cur -= min(w.Amount, ws.cur)
			return true
		case inNext && ws.next > 0:
			ws.next -= min(w.Amount, ws.next)
			return true
		}
		return false
	}
	return false
}

// lockTwo locks the states of keys a and b (b empty: none) in their
// shards, loading them from the Store (or creating them) as needed,
// without any lock held during a load. The caller must call
// e.release(ctx, ia, ib).
func (e *Engine) lockTwo(ctx context.Context, rs *ruleset, a, b string) (sa, sb *subjectState, ia, ib int, err error) {
	ia, ib = e.shardIndex(a), -1
	if b != "" {
		ib = e.shardIndex(b)
	}
	for range maxAcquireAttempts {
		e.lockPair(ia, ib)
		sa = e.shards[ia].getLocked(a)
		if ib >= 0 {
			sb = e.shards[ib].getLocked(b)
		}
		if sa != nil && (ib < 0 || sb != nil) {
			return sa, sb, ia, ib, nil
		}
		e.unlockPair(ia, ib)
		if sa == nil {
			if _, err := e.load(ctx, rs, ia, a, true); err != nil {
				return nil, nil, ia, ib, err
			}
		}
		if ib >= 0 && sb == nil {
			if _, err := e.load(ctx, rs, ib, b, true); err != nil {
				return nil, nil, ia, ib, err
			}
		}
	}
	return nil, nil, ia, ib, fmt.Errorf("engine: the state of %q kept being evicted before use: raise CacheSize", a)
}
