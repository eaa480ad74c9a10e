package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// PlanPending is the pending decision a Plan records when it is admitted.
type PlanPending struct {
	// Record is the decision as a Settler keeps it; the Authority fills
	// FromAllowance and FromCredits from what it charged.
	Record PendingRecord
	// TTL is how long the record is kept: PendingMaxAge.
	TTL time.Duration
}

// Settler is implemented by an Authority that records pending decisions
// with their charges (Plan.Pending), so that any replica sharing it can
// settle them (store/redis). With one, Settle reads and settles there:
// the engine's own table is not used.
type Settler interface {
	// Pending reads the pending decision id. found is false when there is
	// none; settled is true when id was settled within its TTL.
	Pending(ctx context.Context, id uuid.UUID) (rec PendingRecord, found, settled bool, err error)
	// Settle applies p atomically if the decision is still pending, and
	// then marks it settled; applied is false (and nothing changed) when
	// it no longer was. An error means the outcome is unknown; settling
	// again is safe, as the record is gone once applied.
	Settle(ctx context.Context, p *SettlePlan) (SettleResult, error)
}

// SettlePlan is what one settlement changes in a Settler.
type SettlePlan struct {
	Record PendingRecord
	// GiveCredits and GiveAllowance are given back to the owner's
	// credits and, within the grant period starting at Record.GrantStart
	// and never above the grant, its allowance.
	GiveCredits, GiveAllowance int64
	// Extra is charged on top, as far as the balance covers it; Unlimited
	// means the owner's balance is never charged.
	Extra     int64
	Unlimited bool
	// StartingCredits are the owner's credits when it was never charged.
	StartingCredits int64
	// Windows are the counts to give back (while their window is the
	// current one); nil for none.
	Windows []PendingWindow
	// MarkTTL is how long the settled mark is kept: PendingMaxAge.
	MarkTTL time.Duration
}

// SettleResult is a Settler's answer.
type SettleResult struct {
	Applied bool
	// Took is what Extra took from the balance; Allowance and Credits are
	// the owner's after the settlement.
	Took, Allowance, Credits int64
	// Windows is how many window counts were given back.
	Windows int
}

// planPendingLocked sets plan.Pending when the Authority is a Settler and
// an admission of c.req is to be held for settlement. The caller holds
// the locks of c.h.
func (c *charge) planPendingLocked(d *Decision, plan *Plan) {
	if _, ok := c.e.auth.(Settler); !ok {
		return
	}
	if !c.rs.settleRule(c.req.Action).holds(c.cost, len(plan.Counters)) {
		return
	}
	r := PendingRecord{ID: d.ID, State: PendingOpen, Tag: plan.Tag, DecidedAt: plan.Now.UTC(),
		Expires: plan.Now.Add(time.Duration(c.e.pending.maxAge)).UTC(), Subject: c.req.Subject, Team: d.Team,
		Owner: plan.Balance.Owner, Tier: d.Tier, Action: d.Action, Workflow: d.Workflow, Units: d.Units,
		Charged: plan.Balance.Cost, GrantStart: plan.Balance.PeriodStart.UTC(), Trace: c.req.Trace}
	if plan.Balance.Unlimited || plan.Balance.Owner == "" {
		r.Charged = c.cost
	}
	if c.rs.settleRule(c.req.Action).RefundWindows {
		r.Windows = make([]PendingWindow, len(plan.Counters))
		for i, pc := range plan.Counters {
			r.Windows[i] = PendingWindow{Owner: pc.Owner, Limit: pc.Limit, Start: pc.Start.UTC(), Amount: pc.Amount}
		}
	}
	plan.Pending = &PlanPending{Record: r, TTL: time.Duration(c.e.pending.maxAge)}
}

// settleRemote is SettleAt through a Settler.
func (e *Engine) settleRemote(ctx context.Context, sr Settler, s Settlement, now int64) (Settled, error) {
	id := s.DecisionID
	rec, found, settled, err := sr.Pending(ctx, id)
	switch {
	case err != nil:
		return Settled{DecisionID: id}, fmt.Errorf("engine: settle %s: read the pending decision: %w", id, err)
	case settled:
		return Settled{Outcome: SettleDuplicate, DecisionID: id}, nil
	case !found && id.Version() == 7 && now-idTime(id) >= e.pending.maxAge:
		return Settled{Outcome: SettleAgedOut, DecisionID: id}, nil
	case !found:
		return Settled{Outcome: SettleUnmatched, DecisionID: id}, nil
	}
	rs := e.rules.Load()
	r := recFromRecord(&rec)
	res := r.settled(rs)
	plan := planSettle(rs, &r, s, &res)
	sp := &SettlePlan{Record: rec, Extra: plan.extra, MarkTTL: time.Duration(e.pending.maxAge),
		StartingCredits: rs.startingCredits(r.owner)}
	g, hasBalance := rs.settleGrant(&r)
	sp.Unlimited = g.Unlimited || !hasBalance
	if plan.refund > 0 && hasBalance {
		sp.GiveCredits = min(plan.refund, r.fromCredits)
		sp.GiveAllowance = min(plan.refund-sp.GiveCredits, r.fromAllowance)
	}
	if plan.windows {
		sp.Windows = rec.Windows
	}
	out, err := sr.Settle(ctx, sp)
	if err != nil {
		return Settled{DecisionID: id}, fmt.Errorf("engine: settle %s of %q: %w; settling it again is safe", id, r.subject, err)
	}
	if !out.Applied {
		return Settled{Outcome: SettleDuplicate, DecisionID: id}, nil
	}
	res.Refunded, res.Extra = plan.refund, plan.extra
	if plan.extra > 0 && !sp.Unlimited {
		res.Owed = plan.extra - out.Took
	}
	res.WindowsRefunded = out.Windows > 0
	res.Balance, res.HasBalance = addSat(out.Allowance, out.Credits), hasBalance
	e.settleCachedLocally(sp.Windows, now)
	e.mirrorSettledBalance(rs, &r, g, out, res.Extra > 0, now)
	return res, nil
}

// mirrorSettledBalance copies the owner's balance after a remote
// settlement into this engine's cache, where it holds the owner, and
// emits EventBalanceLow when an upward adjustment took it below the alert
// threshold, as a charge would.
func (e *Engine) mirrorSettledBalance(rs *ruleset, r *pendingRec, g TokenGrant, out SettleResult, upward bool, now int64) {
	i := e.shardIndex(r.owner)
	sh := &e.shards[i]
	sh.mu.Lock()
	st, ok := sh.lru.Peek(r.owner)
	emit := false
	var bal int64
	if ok && st.grantSet && st.grantStart == r.grantStart {
		st.allowance, st.credits = out.Allowance, out.Credits
		if upward && balanceLowLocked(st, g, rs.threshold) {
			st.alerted, st.alertedSet = st.grantStart, true
			sh.mutatedLocked(r.owner, st)
			emit, bal = e.events != nil, balanceLocked(st)
		}
	}
	sh.mu.Unlock()
	if emit {
		e.events.Emit(Event{Kind: EventBalanceLow, Time: time.Unix(0, now).In(rs.loc), Subject: r.subject, Team: r.team,
			Tier: r.tier, DecisionID: r.id, Balance: bal})
		e.eventsEmitted.Add(1)
	}
}

// settleCachedLocally gives the window counts of a remote settlement back
// in this engine's cache too, where it holds the states, so that a cached
// window that the settlement made room in does not refuse from the cache.
func (e *Engine) settleCachedLocally(windows []PendingWindow, now int64) {
	for _, w := range windows {
		i := e.shardIndex(w.Owner)
		sh := &e.shards[i]
		sh.mu.Lock()
		if st, ok := sh.lru.Peek(w.Owner); ok {
			refundWindowLocked(st, w, now)
		}
		sh.mu.Unlock()
	}
}
