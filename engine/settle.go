package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SettleRule is how an action's charge is settled from the upstream's
// response (Engine.Settle). The zero value refunds nothing and reads no
// header: every settlement of it is SettleKept.
type SettleRule struct {
	// Off turns settlement off for the action ("settle: off"): its
	// decisions are not held as pending, and an entry for one is
	// SettleUnmatched.
	Off bool
	// RefundStatuses are the response codes that refund the charge; the
	// range {0, 0} means "no response" (a reset or a timeout).
	RefundStatuses []StatusRange
	// RefundWindows makes a refund also give back the request's counts in
	// the call windows, while the window that was charged is still the
	// current one.
	RefundWindows bool
	// UsageHeader is the lower-case name of the response header that holds
	// the actual units ("x-usage-tokens"); the request is repriced with
	// the action's price from it. Empty means none.
	UsageHeader string
}

// StatusRange is an inclusive range of HTTP response codes.
type StatusRange struct{ From, To int }

// DefaultSettleRule is the rule of a priced action that sets none: refund
// the token cost on 500-599 and on no response, count no header.
func DefaultSettleRule() SettleRule {
	return SettleRule{RefundStatuses: []StatusRange{{0, 0}, {500, 599}}}
}

// holds reports whether a decision that charged cost tokens and counted
// in windows limits is worth holding for settlement under r: one that
// neither cost anything nor is refunded in its windows nor repriced
// could only ever be kept, and holding it would crowd out those that
// matter (an entry for it is SettleUnmatched).
func (r *SettleRule) holds(cost int64, windows int) bool {
	return !r.Off && (cost > 0 || r.UsageHeader != "" || (r.RefundWindows && windows > 0))
}

// refunds reports whether status is one of r's refund statuses.
func (r *SettleRule) refunds(status int) bool {
	for _, s := range r.RefundStatuses {
		if status >= s.From && status <= s.To {
			return true
		}
	}
	return false
}

// defaultSettle is what DefaultSettleRule returns, shared by every
// ruleset (it is never modified).
var defaultSettle = DefaultSettleRule()

// settleRule returns the rule that settles action under rs: the action's
// own, or the default. The result must not be modified.
func (rs *ruleset) settleRule(action string) *SettleRule {
	if a, ok := rs.actions[action]; ok && a.Settle != nil {
		return a.Settle
	}
	return &defaultSettle
}

// validateSettle adds the problems of rule r, at path p, to v.
func validateSettle(v *validator, p string, r *SettleRule) {
	if r == nil || r.Off {
		return
	}
	for i, s := range r.RefundStatuses {
		sp := fmt.Sprintf("%s.refund_statuses[%d]", p, i)
		switch {
		case s == StatusRange{}:
		case s.From < 100 || s.To > 599 || s.From > s.To:
			v.add(sp, "must be a range of HTTP codes within 100-599 with from <= to (or 0 for no response), got %d-%d", s.From, s.To)
		}
	}
	if h := r.UsageHeader; h != "" && !validHeaderName(h) {
		v.add(p+".usage_header", "must be a lower-case HTTP header name of at most 128 bytes (a-z, 0-9, '-', '_', '.'), got %q", h)
	}
}

// validHeaderName reports whether h is a lower-case header name of at
// most 128 bytes, as Envoy logs them.
func validHeaderName(h string) bool {
	if len(h) > 128 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// TraceRef is the trace context of a decision's request, kept with the
// pending decision so that its settlement can be recorded on that trace.
// The zero value means no trace.
type TraceRef struct {
	TraceID [16]byte
	SpanID  [8]byte
	Sampled bool
}

// Settlement is the upstream's answer to one decided request, as Envoy's
// access log reports it.
type Settlement struct {
	DecisionID uuid.UUID
	// Status is the HTTP response code; 0 when there was no response.
	Status int
	// Headers are the response headers as logged, with lower-case names.
	// Nil means none.
	Headers map[string]string
}

// SettleOutcome says what a settlement did.
type SettleOutcome uint8

const (
	// SettleKept: matched, nothing to change (a 2xx without a usage
	// header, an actual usage equal to the estimate, or settlement off).
	SettleKept SettleOutcome = iota
	// SettleRefund: the charge was given back (the status matched the rule).
	SettleRefund
	// SettleAdjust: the actual usage was repriced and the difference
	// charged or refunded.
	SettleAdjust
	// SettleUnmatched: no pending decision has that id here.
	SettleUnmatched
	// SettleDuplicate: the decision was settled already.
	SettleDuplicate
	// SettleAgedOut: the pending decision was dropped, for its age or for
	// the table's size, before the entry came.
	SettleAgedOut
	// SettleInvalid: the usage header was present but not a count
	// (digits only, at most MaxQuantity); nothing changed, and the
	// decision counts as settled.
	SettleInvalid
)

var settleOutcomeNames = [...]string{"kept", "refund", "adjust", "unmatched", "duplicate", "aged_out", "invalid"}

// String returns the outcome's name: "kept", "refund", "adjust",
// "unmatched", "duplicate", "aged_out" or "invalid".
func (o SettleOutcome) String() string {
	if int(o) < len(settleOutcomeNames) {
		return settleOutcomeNames[o]
	}
	return fmt.Sprintf("SettleOutcome(%d)", int(o))
}

// ParseSettleOutcome parses what String returns.
func ParseSettleOutcome(s string) (SettleOutcome, error) {
	for i, n := range settleOutcomeNames {
		if strings.EqualFold(s, n) {
			return SettleOutcome(i), nil
		}
	}
	return 0, fmt.Errorf("engine: unknown settle outcome %q: want one of %s", s, strings.Join(settleOutcomeNames[:], ", "))
}

// Settled is the result of one settlement. The amounts are what is
// billed: Charged - Refunded + Extra is what the request costs once
// settled (Owed included, as it is owed). The balance gets back what a
// refund gives, but never more than it would have held without the
// charge: the part of a refund drawn from a grant period that has ended
// since is not given back to the new one.
type Settled struct {
	Outcome    SettleOutcome
	DecisionID uuid.UUID
	DecidedAt  time.Time
	// Owner is the balance owner: the subject, or "team:<name>".
	Subject, Team, Owner string
	Tier                 Tier
	Action, Workflow     string
	// Units is the estimate at the decision; ActualUnits the count from
	// the usage header (0 if none).
	Units, ActualUnits int64
	// Charged is the token cost charged at the decision.
	Charged int64
	// Refunded is the tokens given back by this settlement.
	Refunded int64
	// Extra is the tokens charged on top (the actual usage cost more).
	Extra int64
	// Owed is the part of Extra the balance could not cover: recorded,
	// not charged.
	Owed            int64
	WindowsRefunded bool
	// Balance is the owner's balance after the settlement; HasBalance is
	// false when it was not read (nothing to settle, or no balance).
	Balance    int64
	HasBalance bool
	Trace      TraceRef
	// Unsaved holds, when Options.Deferrer is set, the snapshots of the
	// state this settlement changed, handed to the Deferrer (with the
	// settled mark, for a PendingDeferrer) as Charge hands a decision's:
	// the caller must commit them (store/durable: with the settlement's
	// ledger record), as it does Decision.Unsaved. Nil otherwise.
	Unsaved []Snapshot
}

// parseUsage reads a usage header's value: decimal digits only (no sign,
// exponent, spaces or fraction), at most MaxQuantity.
func parseUsage(s string) (int64, bool) {
	if s == "" || len(s) > 16 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0') // at most 16 digits: no overflow
	}
	return n, n <= MaxQuantity
}
