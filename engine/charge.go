package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Charge decides req at Options.Now() and, when the decision carries a Delay,
// waits it out (without holding any lock) before returning. An error means
// no decision could be made; the Decision then still carries the tier and
// its FailureMode. If ctx ends during the wait, Charge returns the
// decision with an error wrapping ctx.Err(); the reservation stays charged,
// which errs toward the caller's quota rather than the system's.
func (e *Engine) Charge(ctx context.Context, req Request) (d Decision, err error) {
	// d is filled in place: a Decision is large, and copying it twice per
	// request costs more than the decision itself.
	if err = e.decide(ctx, e.now(), &req, &d); err != nil || d.Delay <= 0 {
		return
	}
	t := time.NewTimer(d.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		err = fmt.Errorf("engine: wait %s for the reservation of %q: %w", d.Delay, req.Subject, ctx.Err())
	}
	return
}

// ChargeAt decides req at now without waiting: an admitted request with a
// Delay must not proceed before now+Delay.
func (e *Engine) ChargeAt(ctx context.Context, now time.Time, req Request) (d Decision, err error) {
	err = e.decide(ctx, now, &req, &d)
	return
}

// decide decides req at now into d, which must be the zero Decision. An
// error that no outage caused (a request that would meet more limits than
// one charge can hold) sets d's FailureMode to FailClosed: a tier's
// fail-open covers a store or authority that cannot answer, never a
// request that cannot be metered.
func (e *Engine) decide(ctx context.Context, now time.Time, req *Request, d *Decision) error {
	err := e.decideOnce(ctx, now, req, d)
	if err != nil && errors.Is(err, ErrTooManyLimits) {
		d.FailureMode = FailClosed
	}
	return err
}

// decideOnce is decide without the failure-mode rule for errors. It is
// the whole of one charge, step by step: screen what needs no state,
// acquire the state, plan and decide (here, or through the Authority),
// record what changed, release the locks, emit the events, and commit.
// The ruleset is loaded once, here: every step reads it from c, so a
// Reload during the charge does not mix old and new rules.
func (e *Engine) decideOnce(ctx context.Context, now time.Time, req *Request, d *Decision) error {
	rs := e.rules.Load()
	d.ID = newDecisionID(now)
	unknown := rs.screenAction(req)
	d.Subject, d.Action, d.Units = req.Subject, req.Action, req.Units
	c := charge{e: e, rs: rs, req: *req, now: now.UnixNano(), factor: e.cap.factorValue()}
	c.prepare()
	d.Workflow = c.req.Workflow
	if c.refuseStateless(d, unknown) {
		return nil
	}
	// Acquire: lock the subject's state, and its team's, loading what the
	// cache does not hold.
	known := !rs.rules.DenyUnknown || rs.known(&c.req)
	if err := e.acquire(ctx, rs, &c.req, c.user, known, &c.h); err != nil {
		return err
	}
	if c.h.st == nil || (!known && c.h.st.prof == nil) {
		if c.h.st != nil {
			e.release(ctx, c.h.si, c.h.ti)
		}
		d.deny(ReasonUnknownSubject, rs.msgs.UnknownSubject)
		return nil
	}
	d.Subject = c.req.Subject // the cached copy (acquire)
	// Plan and decide: here (decide.go), or through the Authority
	// (remote.go), which releases the locks for its round trip.
	var held bool
	var err error
	if e.auth != nil {
		held, err = c.decideRemote(ctx, d)
	} else {
		held, err = true, c.decideLocal(d)
	}
	// Record (with the pending decision to settle, settlement.go),
	// release, emit, commit (commit.go).
	if held {
		var snaps []Snapshot
		if err == nil {
			c.recordPendingLocked(d)
			snaps = c.recordLocked(d)
		}
		e.release(ctx, c.h.si, c.h.ti)
		c.emit()
		if err == nil {
			err = c.commit(ctx, snaps)
		}
	}
	if c.badProfile != nil {
		e.logBadProfile(req.Subject, c.badProfile)
	}
	return err
}

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
	// regranted records that planLocked started a new grant period in the
	// payer's cached state: the local path saves it, the remote path
	// leaves the balance to the Authority.
	regranted bool
	// probing is set when a window full only through fail-open counting
	// let the request go to the Authority (decideRemote).
	probing bool
	// fromAllowance and fromCredits split the cost an admission deducted;
	// pend is its pending record, for a PendingStore under SyncWrites.
	fromAllowance, fromCredits int64
	pend                       *PendingRecord
	// badProfile is the problem of the subject's stored profile, to be
	// logged once the locks are released; the profile was ignored.
	badProfile error
}

// prepare looks up what the request needs from the ruleset, before any
// lock is taken.
func (c *charge) prepare() {
	c.user = c.rs.users[c.req.Subject]
	if c.wf = c.rs.workflows[c.req.Workflow]; c.wf != nil {
		c.req.Workflow = c.wf.name // the ruleset's copy, shared by what outlives the request
	}
	c.static = c.rs.staticTier(&c.req, c.user)
	var ok bool
	c.cost, ok = c.rs.cost(&c.req)
	c.tooBig = !ok
}

// refuseStateless refuses, before any state is read, a request with no
// identity, one that names a team's reserved key as its subject, and one
// whose action is unknown (unknown, from screenAction) under
// UnknownActionDeny. It reports whether d is decided.
func (c *charge) refuseStateless(d *Decision, unknown string) bool {
	rs := c.rs
	d.FailureMode, d.Priority = c.static.failure, c.static.priority
	if c.req.Subject == "" {
		// No identity, no tier: a 401 names none (in headers, body,
		// metadata, logs and spans), as it does not know who asked.
		d.deny(ReasonNoIdentity, rs.msgs.NoIdentity)
		return true
	}
	d.Tier = c.static.name
	if strings.HasPrefix(c.req.Subject, teamKeyPrefix) {
		d.deny(ReasonUnknownSubject, rs.msgs.UnknownSubject)
		return true
	}
	if unknown != "" {
		d.UnknownAction = unknown
		if rs.rules.UnknownActions.Mode == UnknownActionDeny {
			// The client chose the name, or it is a typo: neither is
			// recorded as an action (metrics and the ledger stay bounded).
			d.Action = ""
			d.deny(ReasonUnknownAction, rs.msgs.UnknownAction)
			return true
		}
	}
	return false
}

// newDecisionID returns a UUIDv7 for a decision made at now: 48 bits of
// Unix milliseconds, 12 bits of sub-millisecond time and 62 random bits
// from the runtime's per-thread ChaCha8 generator, which takes no lock and
// does not allocate.
func newDecisionID(now time.Time) uuid.UUID {
	var id uuid.UUID
	ms := uint64(now.UnixMilli())
	sub := uint64(now.Nanosecond()%1_000_000) * 4096 / 1_000_000
	binary.BigEndian.PutUint64(id[0:8], ms<<16|0x7000|sub)
	binary.BigEndian.PutUint64(id[8:16], rand.Uint64())
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}
