package ledger

import (
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// Kind classifies a Record.
type Kind string

const (
	// KindCharge is an allowed decision: the request was charged.
	KindCharge Kind = "charge"
	// KindRejection is a denied decision: nothing was charged.
	KindRejection Kind = "rejection"
	// KindAdmin is an administrative change to a balance, tier or profile.
	KindAdmin Kind = "admin"
	// KindSpill summarises decisions that overflowed the Writer's queue:
	// their counts and totals, without the individual records.
	KindSpill Kind = "spill"
)

// Record is one ledger entry. Seq, PrevHash and Hash are assigned when it
// is appended; everything else is set by the caller (FromDecision,
// NewAdminChange).
type Record struct {
	// Seq is the record's position in the chain, from 1, without gaps.
	Seq int64 `json:"seq"`
	// ID is the decision id (a UUIDv7), or a fresh UUIDv7 for admin and
	// spill records.
	ID   uuid.UUID `json:"id"`
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`

	Subject  string `json:"subject,omitempty"`
	Team     string `json:"team,omitempty"`
	Tier     string `json:"tier,omitempty"`
	Action   string `json:"action,omitempty"`
	Workflow string `json:"workflow,omitempty"`
	Units    int64  `json:"units,omitempty"`
	// Cost is the token cost of the request; Charged is what was deducted
	// (Cost when allowed, 0 when denied).
	Cost    int64 `json:"cost,omitempty"`
	Charged int64 `json:"charged,omitempty"`
	// Limits are every limit the request was checked against, with its
	// usage and remaining after the decision.
	Limits []LimitCharge `json:"limits,omitempty"`
	// Balance is the token balance after the decision, of BalanceOwner (the
	// subject or "team:<name>"); HasBalance is false when none applied.
	Balance      int64  `json:"balance,omitempty"`
	HasBalance   bool   `json:"has_balance,omitempty"`
	BalanceOwner string `json:"balance_owner,omitempty"`
	// Allowed and Reason are the decision.
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
	TraceID string `json:"trace_id,omitempty"`

	// Admin is set on KindAdmin records.
	Admin *AdminChange `json:"admin,omitempty"`
	// Spill is set on KindSpill records.
	Spill *Spill `json:"spill,omitempty"`
	// Settlement is set on KindSettlement records.
	Settlement *Settlement `json:"settlement,omitempty"`

	// PrevHash is the hash of the record before this one ("" for the first
	// record of a ledger); Hash is SHA-256 over PrevHash and this record's
	// stored content, hex encoded.
	PrevHash string `json:"-"`
	Hash     string `json:"-"`
}

// LimitCharge is one limit a request was checked against.
type LimitCharge struct {
	Name      string    `json:"name"`
	Period    string    `json:"period"`
	Limit     int64     `json:"limit"`
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	Reset     time.Time `json:"reset"`
}

// AdminChange is what an administrator changed: Actor is who (the token's
// name), What the field ("credits", "tier", "profile"), and Before and
// After its values as text.
type AdminChange struct {
	Actor  string `json:"actor"`
	What   string `json:"what"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// Spill sums decisions that overflowed the queue for one subject, team,
// tier, action and balance owner within one hour, so that usage totals and
// charged tokens still add up although the individual records are gone.
type Spill struct {
	// Records is how many decisions this summarises.
	Records    int64 `json:"records"`
	Calls      int64 `json:"calls"`
	Units      int64 `json:"units"`
	Tokens     int64 `json:"tokens"`
	Rejections int64 `json:"rejections"`
	// Refunded, Extra and Owed sum the settlements that overflowed (their
	// Tokens and Units are in the fields above).
	Refunded int64     `json:"refunded,omitempty"`
	Extra    int64     `json:"extra,omitempty"`
	Owed     int64     `json:"owed,omitempty"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// FromDecision returns the ledger record of d: a KindCharge record when d
// was allowed, a KindRejection record otherwise. now is the decision time.
func FromDecision(d *engine.Decision, traceID string, now time.Time) Record {
	r := Record{
		ID:           d.ID,
		Time:         now,
		Kind:         KindRejection,
		Subject:      d.Subject,
		Team:         d.Team,
		Tier:         string(d.Tier),
		Action:       d.Action,
		Workflow:     d.Workflow,
		Units:        max(d.Units, 0), // usage is never negative, whatever a caller passed
		Cost:         d.Cost,
		Charged:      max(d.Charged, 0),
		Balance:      d.Balance,
		HasBalance:   d.HasBalance,
		BalanceOwner: d.BalanceOwner,
		Allowed:      d.Allowed,
		Reason:       d.Reason.String(),
		TraceID:      traceID,
	}
	if d.Allowed {
		r.Kind = KindCharge
	}
	if lims := d.Limits(); len(lims) > 0 {
		r.Limits = make([]LimitCharge, len(lims))
		for i, l := range lims {
			r.Limits[i] = LimitCharge{
				Name:      l.Name,
				Period:    l.Period.String(),
				Limit:     l.Limit,
				Used:      l.Used,
				Remaining: l.Remaining,
				Reset:     l.Reset,
			}
		}
	}
	return r
}

// NewAdminChange returns a KindAdmin record: actor changed what of subject
// (a subject id or "team:<name>") from before to after at now.
func NewAdminChange(now time.Time, actor, subject, what, before, after string) (Record, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Record{}, fmt.Errorf("ledger: admin record id: %w", err)
	}
	return Record{
		ID:      id,
		Time:    now,
		Kind:    KindAdmin,
		Subject: subject,
		Allowed: true,
		Admin:   &AdminChange{Actor: actor, What: what, Before: before, After: after},
	}, nil
}

// rollupDelta is what a record adds to the usage rollups.
func (r *Record) rollupDelta() (d counts, ok bool) {
	switch r.Kind {
	case KindCharge:
		return counts{calls: 1, units: r.Units, tokens: r.Charged}, true
	case KindRejection:
		return counts{rejections: 1}, true
	case KindSpill:
		if r.Spill == nil {
			return counts{}, false
		}
		s := r.Spill
		return counts{calls: s.Calls, units: s.Units, tokens: s.Tokens, rejections: s.Rejections,
			refunded: s.Refunded, extra: s.Extra, owed: s.Owed}, true
	case KindSettlement:
		if r.Settlement == nil {
			return counts{}, false
		}
		return r.Settlement.delta(r.Units), true
	}
	return counts{}, false
}

// rollupTime is the time whose periods r counts in: a settlement's
// decision time, else the record's.
func (r *Record) rollupTime() time.Time {
	if r.Kind == KindSettlement && r.Settlement != nil && !r.Settlement.DecidedAt.IsZero() {
		return r.Settlement.DecidedAt
	}
	return r.Time
}

// chargedTokens is the tokens deducted from BalanceOwner by this record.
func (r *Record) chargedTokens() int64 {
	switch r.Kind {
	case KindCharge:
		return r.Charged
	case KindSpill:
		if r.Spill != nil {
			return r.Spill.Tokens
		}
	case KindSettlement:
		if s := r.Settlement; s != nil {
			return s.Extra - s.Owed - s.Refunded
		}
	}
	return 0
}

// counts are the additive usage figures kept by the rollups.
type counts struct {
	calls, units, tokens, rejections int64
	// refunded, extra and owed are the tokens settlements refunded,
	// charged on top, and could not charge; tokens and units already
	// include what they moved (units and tokens are settled figures).
	refunded, extra, owed int64
}

// add adds o to c, saturating at math.MaxInt64 rather than wrapping to a
// negative usage (each charge is at most engine.MaxQuantity, so only an
// absurd sum saturates).
func (c *counts) add(o counts) {
	c.calls = addCount(c.calls, o.calls)
	c.units = addCount(c.units, o.units)
	c.tokens = addCount(c.tokens, o.tokens)
	c.rejections = addCount(c.rejections, o.rejections)
	c.refunded = addCount(c.refunded, o.refunded)
	c.extra = addCount(c.extra, o.extra)
	c.owed = addCount(c.owed, o.owed)
}

// addCount returns a + b, saturated at math.MaxInt64 and math.MinInt64.
// b is negative only for a settlement, which takes back at most what its
// charge added to the same period.
func addCount(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}
