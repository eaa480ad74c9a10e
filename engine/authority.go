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
// state, else the subject id (as authorityPlanLocked builds Plan.Tag for
// a request that names no team).
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
	res, err := c.e.auth.Status(ctx, c.authorityPlanLocked(owner, g, ownerKey, 0))
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
