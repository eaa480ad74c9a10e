package engine

// This file holds the settlement API agreed with the engine/store slice
// (issue #20) and a minimal implementation of it that is correct for one
// node with its state in memory: pending decisions live in a bounded table
// of this process, so a settlement after a restart or on another replica is
// SettleUnmatched here. The engine/store slice replaces the implementation
// (engine/settle.go, engine/pending.go) and keeps the API.

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults of Config.PendingSize and Config.PendingMaxAge.
const (
	defaultPendingSize   = 100_000
	defaultPendingMaxAge = 15 * time.Minute
)

// SettleRule is how an action's charge is settled from the upstream's
// response. The zero value refunds nothing and reads no header.
type SettleRule struct {
	// Off turns settlement off for the action ("settle: off").
	Off bool
	// RefundStatuses are the response codes that refund the charge;
	// {0,0} means "no response" (a reset or a timeout).
	RefundStatuses []StatusRange
	// RefundWindows makes a refund also give back what the request counted
	// in its windows (while each window is still the one it counted in).
	RefundWindows bool
	// UsageHeader is the lower-case response header that carries the
	// actual units ("x-usage-tokens"); empty means none.
	UsageHeader string
}

// StatusRange is an inclusive range of HTTP response codes.
type StatusRange struct{ From, To int }

// DefaultSettleRule returns the rule of a priced action with none set:
// refund the token cost on 500-599 and on no response, keep the windows,
// read no usage header.
func DefaultSettleRule() SettleRule {
	return SettleRule{RefundStatuses: []StatusRange{{0, 0}, {500, 599}}}
}

// refunds reports whether status is in one of r's refund ranges.
func (r *SettleRule) refunds(status int) bool {
	for _, s := range r.RefundStatuses {
		if status >= s.From && status <= s.To {
			return true
		}
	}
	return false
}

// TraceRef is the trace context a decision was made in (W3C trace
// context); the zero value means none.
type TraceRef struct {
	TraceID [16]byte
	SpanID  [8]byte
	Sampled bool
}

// Settlement is what the upstream's response says about one decision.
type Settlement struct {
	DecisionID uuid.UUID
	// Status is the HTTP response code; 0 when there was no response.
	Status int
	// Headers are the response headers as logged, with lower-case names;
	// nil means none.
	Headers map[string]string
}

// SettleOutcome is what a settlement did.
type SettleOutcome uint8

// The outcomes of a settlement.
const (
	// SettleKept: matched, nothing to change (a response without a
	// refunding status or usage header, or settlement off).
	SettleKept SettleOutcome = iota
	// SettleRefund: the charge was given back.
	SettleRefund
	// SettleAdjust: the actual usage was repriced and the difference
	// charged or refunded.
	SettleAdjust
	// SettleUnmatched: no pending decision has the id.
	SettleUnmatched
	// SettleDuplicate: the decision was already settled.
	SettleDuplicate
	// SettleAgedOut: the pending decision was dropped for age or size
	// before its settlement came.
	SettleAgedOut
	// SettleInvalid: the usage header was present but not a valid count;
	// nothing changed.
	SettleInvalid
)

var settleOutcomeNames = [...]string{"kept", "refund", "adjust", "unmatched", "duplicate", "aged_out", "invalid"}

// String returns the outcome's name as used in metrics and the ledger.
func (o SettleOutcome) String() string {
	if int(o) < len(settleOutcomeNames) {
		return settleOutcomeNames[o]
	}
	return "unknown"
}

// ParseSettleOutcome parses a name returned by String.
func ParseSettleOutcome(s string) (SettleOutcome, error) {
	for i, n := range settleOutcomeNames {
		if n == s {
			return SettleOutcome(i), nil
		}
	}
	return 0, fmt.Errorf("engine: unknown settle outcome %q", s)
}

// Settled is the result of a settlement. Amounts are tokens unless named
// units.
type Settled struct {
	Outcome    SettleOutcome
	DecisionID uuid.UUID
	DecidedAt  time.Time
	Subject    string
	Team       string
	// Owner is the balance owner: the subject, or "team:<name>".
	Owner    string
	Tier     Tier
	Action   string
	Workflow string
	// Units was estimated at the decision; ActualUnits is from the usage
	// header (0 if none).
	Units, ActualUnits int64
	// Charged is what the decision charged.
	Charged int64
	// Refunded is what this settlement gave back.
	Refunded int64
	// Extra is what this settlement charged on top (actual above estimate).
	Extra int64
	// Owed is the part of Extra the balance could not cover: recorded,
	// not charged.
	Owed            int64
	WindowsRefunded bool
	// Balance is the owner's balance after the settlement; HasBalance is
	// false when the owner has no limited balance.
	Balance    int64
	HasBalance bool
	Trace      TraceRef
}

// PendingStats describes the pending decisions: those held, and how many
// were dropped for age or for size since the engine started.
type PendingStats struct {
	Held             int
	AgedOut, Evicted uint64
}

// pendingWindow is what a decision counted in one window.
type pendingWindow struct {
	owner, limit string
	start        int64 // start of the window counted in (unix ns)
	next         bool  // a reservation: counted in the window after the current one
	amount       int64
}

// pendingDecision is an allowed, charged decision awaiting its settlement.
type pendingDecision struct {
	id                        uuid.UUID
	at                        int64 // unix ns
	subject, action, workflow string
	units                     int64
	trace                     TraceRef
	tier                      Tier
	team                      string
	owner                     string
	charged                   int64
	fromGrant                 int64 // part of charged taken from the allowance
	grantAt                   int64 // the owner's grant period start at the decision
	unlimited                 bool
	settled                   bool
	windows                   []pendingWindow
	// inline backs windows for the common request that counts in one
	// window, so that holding a decision is one allocation.
	inline [1]pendingWindow
}

// pendingTable holds pending decisions in arrival order, bounded by size
// and age. Settled ones stay until they age out, to answer duplicates.
type pendingTable struct {
	mu     sync.Mutex
	size   int
	maxAge time.Duration
	m      map[uuid.UUID]*pendingDecision
	ring   []*pendingDecision
	head   int // oldest
	n      int
	held   int
	// cutoff is the newest decision time (unix ms) of a dropped entry: an
	// unknown id that is not newer was dropped, not never known.
	cutoff           int64
	agedOut, evicted uint64
}

// pendingStripes is how many pendingTables the pending decisions are
// spread over, by a random byte of their id, so that concurrent Checks
// rarely wait on one lock.
const pendingStripes = 16

// pendingSet is the engine's pending decisions.
type pendingSet struct{ stripes [pendingStripes]pendingTable }

func (ps *pendingSet) init(size int, maxAge time.Duration) {
	per := max((size+pendingStripes-1)/pendingStripes, 1)
	for i := range ps.stripes {
		ps.stripes[i].init(per, maxAge)
	}
}

// of returns the stripe of id: its last byte is random (newDecisionID).
func (ps *pendingSet) of(id uuid.UUID) *pendingTable {
	return &ps.stripes[id[15]%pendingStripes]
}

func (ps *pendingSet) add(d *pendingDecision) { ps.of(d.id).add(d) }

func (ps *pendingSet) take(id uuid.UUID, now int64) (*pendingDecision, SettleOutcome) {
	return ps.of(id).take(id, now)
}

func (ps *pendingSet) untake(d *pendingDecision) { ps.of(d.id).untake(d) }

func (p *pendingTable) init(size int, maxAge time.Duration) {
	p.size, p.maxAge = size, maxAge
	p.m = make(map[uuid.UUID]*pendingDecision)
}

// dropOldLocked drops the entries older than now - maxAge, and the oldest
// entry if room is needed for one more. The caller holds p.mu.
func (p *pendingTable) dropOldLocked(now int64, room bool) {
	for p.n > 0 {
		d := p.ring[p.head]
		full := room && p.n == p.size
		if !full && now-d.at <= int64(p.maxAge) {
			return
		}
		p.ring[p.head] = nil
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		delete(p.m, d.id)
		p.cutoff = max(p.cutoff, idMillis(d.id))
		if d.settled {
			continue
		}
		p.held--
		if full && now-d.at <= int64(p.maxAge) {
			p.evicted++
		} else {
			p.agedOut++
		}
	}
}

func (p *pendingTable) add(d *pendingDecision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ring == nil {
		p.ring = make([]*pendingDecision, p.size)
	}
	p.dropOldLocked(d.at, true)
	p.ring[(p.head+p.n)%len(p.ring)] = d
	p.n++
	p.held++
	p.m[d.id] = d
}

// take marks the decision id settled and returns it, or the outcome that
// says why there is none to settle.
func (p *pendingTable) take(id uuid.UUID, now int64) (*pendingDecision, SettleOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropOldLocked(now, false)
	d := p.m[id]
	switch {
	case d == nil && idMillis(id) <= p.cutoff:
		return nil, SettleAgedOut
	case d == nil:
		return nil, SettleUnmatched
	case d.settled:
		return d, SettleDuplicate
	}
	d.settled = true
	p.held--
	return d, SettleKept
}

// untake makes d pending again after a settlement that could not be applied.
func (p *pendingTable) untake(d *pendingDecision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[d.id] == d && d.settled {
		d.settled = false
		p.held++
	}
}

// idMillis returns the Unix milliseconds of a UUIDv7.
func idMillis(id uuid.UUID) int64 {
	return int64(binary.BigEndian.Uint64(id[0:8]) >> 16)
}

// PendingStats returns the pending decisions' counters.
func (e *Engine) PendingStats() PendingStats {
	var s PendingStats
	for i := range e.pend.stripes {
		p := &e.pend.stripes[i]
		p.mu.Lock()
		s.Held += p.held
		s.AgedOut += p.agedOut
		s.Evicted += p.evicted
		p.mu.Unlock()
	}
	return s
}

// settleRule returns the rule of action under rs.
func (rs *ruleset) settleRule(action string) SettleRule {
	a, ok := rs.actions[action]
	switch {
	case ok && a.Settle != nil:
		return *a.Settle
	case ok && (a.PerCall > 0 || a.PerThousand > 0):
		return DefaultSettleRule()
	}
	return SettleRule{Off: true}
}

// pendingLocked returns what an allowed decision d charged, for its
// settlement, or nil when it charged nothing or its action is not settled.
// The caller holds the locks of c.h.
func (c *charge) pendingLocked(d *Decision) *pendingDecision {
	if !d.Allowed || c.rs.settleRule(d.Action).Off || (d.Charged == 0 && c.n == 0) {
		return nil
	}
	owner, grant, _ := c.balanceOwnerLocked()
	p := &pendingDecision{id: d.ID, at: c.now, subject: c.req.Subject, action: c.req.Action, workflow: c.req.Workflow,
		units: c.req.Units, trace: c.req.Trace, tier: d.Tier, team: d.Team, owner: d.BalanceOwner,
		charged: d.Charged, grantAt: owner.grantStart, unlimited: grant.Unlimited || d.Charged == 0,
		fromGrant: c.fromGrant}
	p.windows = p.inline[:0]
	if c.n > len(p.inline) {
		p.windows = make([]pendingWindow, 0, c.n)
	}
	for i := range c.n {
		a := &c.lims[i]
		key := c.req.Subject
		if a.owner != c.h.st {
			key = c.h.team.key
		}
		ws := a.ws()
		w := pendingWindow{owner: key, limit: a.rule.key, start: ws.start, amount: a.amount}
		if d.Delay > 0 && a.slot == 1 {
			w.start, w.next = ws.end, true
		}
		p.windows = append(p.windows, w)
	}
	return p
}

// Settle settles one decision exactly once at the engine's clock. A
// duplicate, unknown or aged-out id is an outcome, not an error; an error
// means the settlement could not be applied (the store failed) and nothing
// changed. It is safe for concurrent use.
func (e *Engine) Settle(ctx context.Context, s Settlement) (Settled, error) {
	return e.SettleAt(ctx, s, e.now())
}

// SettleAt is Settle at now.
func (e *Engine) SettleAt(ctx context.Context, s Settlement, now time.Time) (Settled, error) {
	out := Settled{DecisionID: s.DecisionID}
	p, outcome := e.pend.take(s.DecisionID, now.UnixNano())
	if p != nil {
		out.fill(p, e.rules.Load())
	}
	if p == nil || outcome == SettleDuplicate {
		out.Outcome = outcome
		return out, nil
	}
	rs := e.rules.Load()
	plan, err := planSettlement(rs, p, s)
	if err != nil {
		out.Outcome = SettleInvalid
		return out, nil //nolint:nilerr // an invalid header is an outcome
	}
	if plan.outcome == SettleKept {
		out.Outcome = SettleKept
		return out, nil
	}
	if err := e.applySettlement(ctx, rs, p, &plan, now, &out); err != nil {
		e.pend.untake(p)
		return Settled{DecisionID: s.DecisionID}, err
	}
	out.Outcome = plan.outcome
	return out, nil
}

func (out *Settled) fill(p *pendingDecision, rs *ruleset) {
	out.DecidedAt = time.Unix(0, p.at).In(rs.loc)
	out.Subject, out.Team, out.Owner, out.Tier = p.subject, p.team, p.owner, p.tier
	out.Action, out.Workflow, out.Units, out.Charged = p.action, p.workflow, p.units, p.charged
	out.Trace = p.trace
}

// settlePlan is what a settlement is to change, worked out before
// anything changes.
type settlePlan struct {
	outcome       SettleOutcome
	actual        int64
	refund, extra int64
	windows       bool
}

// planSettlement decides what s does to p under rs; an error means the
// usage header is not a valid count.
func planSettlement(rs *ruleset, p *pendingDecision, s Settlement) (settlePlan, error) {
	rule := rs.settleRule(p.action)
	switch {
	case rule.Off:
		return settlePlan{outcome: SettleKept}, nil
	case rule.refunds(s.Status):
		return settlePlan{outcome: SettleRefund, refund: p.charged, windows: rule.RefundWindows}, nil
	case rule.UsageHeader == "":
		return settlePlan{outcome: SettleKept}, nil
	}
	v, ok := s.Headers[rule.UsageHeader]
	if !ok {
		return settlePlan{outcome: SettleKept}, nil
	}
	actual, err := strconv.ParseInt(v, 10, 64)
	if err != nil || actual < 0 || actual > MaxQuantity {
		return settlePlan{}, fmt.Errorf("engine: usage header %s: %q is not a count in [0, %d]", rule.UsageHeader, v, MaxQuantity)
	}
	a := rs.actions[p.action]
	cost, ok := priceOf(a.PerCall, a.PerThousand, actual)
	if !ok {
		return settlePlan{}, fmt.Errorf("engine: usage header %s: %d units cost more than %d tokens", rule.UsageHeader, actual, MaxQuantity)
	}
	plan := settlePlan{outcome: SettleAdjust, actual: actual}
	switch {
	case cost < p.charged:
		plan.refund = p.charged - cost
	case cost > p.charged:
		plan.extra = cost - p.charged
	}
	return plan, nil
}

// applySettlement applies plan to the states of p's balance owner and
// window owners: each is loaded first, so that a store that fails changes
// nothing.
func (e *Engine) applySettlement(ctx context.Context, rs *ruleset, p *pendingDecision, plan *settlePlan, now time.Time, out *Settled) error {
	keys := []string{p.owner}
	if plan.windows {
		for _, w := range p.windows {
			if w.owner != p.owner && w.owner != keys[len(keys)-1] {
				keys = append(keys, w.owner)
			}
		}
	}
	for _, k := range keys {
		if _, err := e.load(ctx, rs, e.shardIndex(k), k, true); err != nil {
			return fmt.Errorf("engine: settle %s: %w", p.id, err)
		}
	}
	out.ActualUnits = plan.actual
	var events []Event
	for _, k := range keys {
		err := e.updateState(ctx, rs, k, func(st *subjectState) bool {
			changed := false
			if k == p.owner {
				changed = settleBalanceLocked(st, rs, p, plan, now.UnixNano(), out)
				if ev, ok := settleEventLocked(st, rs, p, out, now); ok {
					events = append(events, ev)
				}
			}
			if plan.windows && refundWindowsLocked(st, k, p) {
				changed, out.WindowsRefunded = true, true
			}
			return changed
		})
		if err != nil {
			return fmt.Errorf("engine: settle %s: %w", p.id, err)
		}
	}
	for _, ev := range events {
		if e.events == nil {
			break
		}
		e.events.Emit(ev)
		e.eventsEmitted.Add(1)
	}
	return nil
}

// settleBalanceLocked gives back plan.refund and charges plan.extra on st,
// the balance owner of p. The caller holds st's lock.
func settleBalanceLocked(st *subjectState, rs *ruleset, p *pendingDecision, plan *settlePlan, now int64, out *Settled) bool {
	out.HasBalance = !p.unlimited
	if p.unlimited {
		return false
	}
	changed := rollGrantLocked(st, rs.grantOf(p), now, rs.loc)
	if plan.refund > 0 {
		// What came from the allowance goes back to it only within the
		// same grant period (a later period was refilled in full); what
		// came from credits goes back to credits.
		fromCredits := max(p.charged-p.fromGrant, 0)
		toCredits := min(plan.refund, fromCredits)
		toGrant := plan.refund - toCredits
		st.credits = min(addSat(st.credits, toCredits), MaxQuantity)
		if toGrant > 0 && st.grantStart == p.grantAt {
			st.allowance = min(addSat(st.allowance, toGrant), MaxQuantity)
		} else {
			toGrant = 0
		}
		out.Refunded = toCredits + toGrant
		changed = changed || out.Refunded > 0
	}
	if plan.extra > 0 {
		pay := min(plan.extra, max(balanceLocked(st), 0))
		spendLocked(st, pay)
		out.Extra, out.Owed = plan.extra, plan.extra-pay
		changed = changed || pay > 0
	}
	out.Balance = balanceLocked(st)
	return changed
}

// grantOf returns the grant of p's balance owner under rs.
func (rs *ruleset) grantOf(p *pendingDecision) TokenGrant {
	if t := rs.teams[p.team]; t != nil && t.pays() && t.key == p.owner {
		return t.grant
	}
	if tr := rs.tiers[p.tier]; tr != nil {
		return tr.grant
	}
	return TokenGrant{}
}

// settleEventLocked returns the EventBalanceLow of an upward adjustment
// that took the balance below the threshold. The caller holds st's lock.
func settleEventLocked(st *subjectState, rs *ruleset, p *pendingDecision, out *Settled, now time.Time) (Event, bool) {
	g := rs.grantOf(p)
	if out.Extra == 0 || !balanceLowLocked(st, g, rs.threshold) {
		return Event{}, false
	}
	st.alerted, st.alertedSet = st.grantStart, true
	return Event{Kind: EventBalanceLow, Time: now.In(rs.loc), Subject: p.subject, Team: p.team,
		Tier: p.tier, DecisionID: p.id, Balance: out.Balance}, true
}

// refundWindowsLocked takes back what p counted in key's windows that are
// still the windows it counted in. The caller holds st's lock.
func refundWindowsLocked(st *subjectState, key string, p *pendingDecision) bool {
	changed := false
	for _, w := range p.windows {
		if w.owner != key {
			continue
		}
		i := st.findWindowLocked(w.limit)
		if i < 0 {
			continue
		}
		ws := &st.windows[i]
		switch {
		case ws.start == w.start:
			ws.cur -= min(w.amount, max(ws.cur, 0))
		case w.next && ws.end == w.start:
			ws.next -= min(w.amount, max(ws.next, 0))
		default:
			continue
		}
		changed = true
	}
	return changed
}

// findWindowLocked returns the index of the window named key, or -1.
func (st *subjectState) findWindowLocked(key string) int {
	for i := range st.windows {
		if st.windows[i].key == key {
			return i
		}
	}
	return -1
}

// updateState runs fn on the state of key with its shard locked (loading
// it if needed) and, when fn reports a change, marks it mutated and saves
// it at once under SyncWrites.
func (e *Engine) updateState(ctx context.Context, rs *ruleset, key string, fn func(*subjectState) bool) error {
	i := e.shardIndex(key)
	sh := &e.shards[i]
	for range maxAcquireAttempts {
		sh.mu.Lock()
		st := sh.getLocked(key)
		if st == nil {
			sh.mu.Unlock()
			if _, err := e.load(ctx, rs, i, key, true); err != nil {
				return err
			}
			continue
		}
		var snaps []Snapshot
		if fn(st) {
			sh.mutatedLocked(key, st)
			if e.syncWrites {
				snaps = append(snaps, st.snapshotLocked(key))
				st.dirty = false
			}
		}
		q := sh.takeQueuedLocked()
		sh.mu.Unlock()
		e.saveQueued(ctx, sh, q)
		if len(snaps) == 0 {
			return nil
		}
		if err := e.store.Save(ctx, snaps); err != nil {
			e.storeErrors.Add(1)
			sh.mu.Lock()
			sh.markDirtyLocked(key, st)
			sh.mu.Unlock()
			return fmt.Errorf("engine: save state of %q: %w", key, err)
		}
		sh.mu.Lock()
		st.savedVersion = max(st.savedVersion, snaps[0].Version)
		sh.mu.Unlock()
		return nil
	}
	return fmt.Errorf("engine: settle %q: its state kept being evicted before use: raise CacheSize", key)
}
