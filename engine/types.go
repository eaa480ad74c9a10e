package engine

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Tier names a subscription plan, such as "freemium", "standard" or
// "enterprise". Tiers are defined in Rules; the zero value means "not set".
type Tier string

// Request is one request to be priced and charged. The zero value of each
// optional field means "not given".
type Request struct {
	// Subject is the caller's id (a user). Empty means the request has no
	// identity and is denied with ReasonNoIdentity.
	Subject string
	// Team is the caller's team, if known from a trusted identity source.
	// Empty means the team from Rules.Users or Rules.Teams membership, if any.
	Team string
	// Roles are the caller's RBAC roles from a trusted identity source; they
	// add to the roles configured for the user.
	Roles []string
	// Tier is a tier asserted by a trusted identity source (a JWT claim).
	// A runtime profile set through SetProfile and a configured user's tier
	// take precedence over it; empty means the configured default tier.
	Tier Tier
	// Action is what the request does ("translate"); it selects the cost and
	// per-action limits. Empty means a plain API call.
	Action string
	// Workflow names the workflow the request belongs to, if any.
	Workflow string
	// Units is the size of the request in the action's unit (words), used
	// for pricing. Zero means no per-unit cost.
	Units int64
	// Deadline is when the caller stops waiting. A request is never delayed
	// past it. The zero value means no deadline.
	Deadline time.Time
	// Trace is the incoming trace context, kept with the pending decision
	// so that its settlement is recorded on the same trace. The zero value
	// means none.
	Trace TraceRef
}

// LimitStatus describes one limit after a charge, or the one that refused a
// request.
type LimitStatus struct {
	// Name identifies the limit, e.g. "hour", "translate:day",
	// "role:intern:hour", "workflow:nightly:hour", "team:hour". It is
	// stable across reloads.
	Name string
	// Period is the window length; Calendar periods (minute, hour, day,
	// month) align to the calendar in the configured time zone.
	Period Period
	// Limit is the effective maximum per window (after the capacity factor).
	Limit int64
	// Used is the usage in the current window after this request.
	Used int64
	// Remaining is Limit minus Used, never below zero.
	Remaining int64
	// Reset is when the current window ends (fixed) or when the next unit
	// of capacity frees up (sliding).
	Reset time.Time
}

// Decision is the outcome of Charge. Every outcome, allowed or denied, is a
// Decision; an error from Charge means no decision could be made.
type Decision struct {
	// ID is the decision id, a UUIDv7: time-ordered, and the GUID that ties
	// the decision to its ledger record, span and log line.
	ID uuid.UUID
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Reason says why. It is ReasonOK when Allowed.
	Reason Reason
	// Message is the text for the client: empty when allowed, by default
	// "Quota exceeded. Upgrade your plan or wait for the reset." for a
	// window, and so on for the other reasons.
	Message string
	// Warning is set when usage reached the alert threshold of any limit,
	// e.g. "Approaching daily limit."
	Warning string

	Subject  string
	Team     string
	Tier     Tier
	Priority Priority
	Action   string
	Workflow string
	Units    int64

	// Cost is the token cost of the request. Charged is what was actually
	// deducted: Cost when allowed, 0 when denied.
	Cost    int64
	Charged int64
	// Balance is the token balance left after the decision; HasBalance is
	// false when the subject has no token balance (no cost was due).
	Balance    int64
	HasBalance bool
	// BalanceOwner is the key that paid: the subject, or "team:<name>".
	BalanceOwner string
	// Grant is the owner's periodic token grant per GrantPeriod, and
	// Refill when the balance is next refilled to it; both are zero when
	// the owner has no limited grant.
	Grant       int64
	GrantPeriod Period
	Refill      time.Time

	// Binding is the limit with the least remaining (for a window or
	// too-large refusal, the one that refused). HasBinding is false when
	// no limit applied.
	Binding    LimitStatus
	HasBinding bool
	// RetryAfter is how long to wait before a retry can succeed; zero when
	// allowed, or when no wait will help (ReasonRequestTooLarge, a cost that
	// no refill covers).
	RetryAfter time.Duration
	// Amount is what the request counts against the Binding limit, for
	// ReasonRequestTooLarge: more than the limit's maximum.
	Amount int64
	// Delay is how long an admitted request must wait (the tier's
	// max_delay); Charge waits it out, ChargeAt leaves it to the caller.
	Delay time.Duration
	// RequiredTier names a tier that includes the action or workflow, for
	// ReasonFeatureNotInPlan.
	RequiredTier Tier
	// UnknownAction is the action the request named when it has no price
	// (cut to 128 bytes): the request was refused with ReasonUnknownAction,
	// or priced as Action under UnknownActionPrice. Empty otherwise.
	UnknownAction string
	// FailureMode is the tier's failure mode, for callers that must decide
	// what an error means.
	FailureMode FailureMode
	// Unsaved holds, when Config.Deferrer is set, the snapshots of the
	// state this decision changed. The engine handed them to the Deferrer
	// instead of saving them, so the caller must commit them (store/durable
	// commits them with the decision's ledger record). It is nil
	// otherwise, and set even when Charge returns an error.
	Unsaved []Snapshot

	limits  [MaxLimitsPerRequest]LimitStatus
	nlimits int
}

// Limits returns every limit that applied to the request, with its state
// after the decision. The slice aliases d and is valid while d is.
func (d *Decision) Limits() []LimitStatus { return d.limits[:d.nlimits] }

// MaxLimitsPerRequest bounds how many limits one request is checked against.
const MaxLimitsPerRequest = 16

// EventKind classifies an Event.
type EventKind int

const (
	// EventThreshold is emitted once per subject, limit and window when usage
	// first reaches the alert threshold.
	EventThreshold EventKind = iota + 1
	// EventBreach is emitted once per subject, limit and window when a
	// request is first refused by that limit.
	EventBreach
	// EventBalanceLow is emitted once per balance period when a balance
	// first falls below the alert threshold of its grant.
	EventBalanceLow
	// EventInsufficientBalance is emitted once per balance period when a
	// request is first refused for lack of tokens.
	EventInsufficientBalance
)

// Event is something the alerting pipeline may want to know about.
type Event struct {
	Kind       EventKind
	Time       time.Time
	Subject    string
	Team       string
	Tier       Tier
	Limit      LimitStatus
	Window     time.Time // start of the window the event belongs to
	DecisionID uuid.UUID
	Balance    int64
}

// Events receives engine events. Emit must not block: implementations
// buffer and drop (counting the drop) when full. Emit is called without any
// engine lock held and may be called concurrently.
type Events interface {
	Emit(Event)
}

// Store persists subject state outside the in-memory cache. Evicted and
// flushed state is saved; a cache miss loads it back, so eviction never
// resets usage. Implementations must be safe for concurrent use. Save must
// keep, per key, the snapshot with the highest Version.
type Store interface {
	// Load returns the saved state for key, or ok == false if none.
	Load(ctx context.Context, key string) (s Snapshot, ok bool, err error)
	// Save persists the snapshots.
	Save(ctx context.Context, snaps []Snapshot) error
}

// Deferrer takes over the saves that Config.SyncWrites makes Charge do:
// see Config.Deferrer. Implementations must be safe for concurrent use.
type Deferrer interface {
	// Defer receives the snapshots one decision changed, which the Store
	// must treat as saved (its Load returns them) until the caller commits
	// them from Decision.Unsaved. It is called with the snapshots' shard
	// locks held, so that the snapshots of one key arrive in the order of
	// their versions: it must not block or call the Engine. It must not
	// modify snaps, which it may keep.
	Defer(snaps []Snapshot)
}

// PendingDeferrer is a Deferrer that also takes a decision's pending
// record (see PendingStore), so that the caller's commit of
// Decision.Unsaved writes the record with the state its charge changed.
// With a Deferrer that is not one, the record is saved on its own after
// the snapshots are deferred.
type PendingDeferrer interface {
	Deferrer
	// DeferPending is Defer for a decision that also holds rec, which
	// must be committed with snaps. The same rules apply.
	DeferPending(snaps []Snapshot, rec PendingRecord)
}

// Snapshot is a copy of one subject's (or team's) state, safe to hand to a
// Store. Key is the subject id, or "team:<name>" for a team.
type Snapshot struct {
	Key     string
	Version uint64
	// Profile overrides set at run time (SetProfile); empty means none.
	Profile Profile
	// Windows are the window counters, one per limit name.
	Windows []WindowSnapshot
	// Balance state.
	Allowance       int64     // what is left of the periodic grant
	AllowancePeriod time.Time // start of the grant period Allowance belongs to
	// AllowanceEnd is the end of that grant period, which a tier change
	// within it does not move (zero: not known, as in snapshots of older
	// builds; it is then computed from the grant that applies).
	AllowanceEnd time.Time
	// Grant is the grant Amount that Allowance was measured against
	// (-1: unlimited; 0: not known, as in snapshots of older builds), so
	// that a tier change applies the new grant in the current period.
	Grant          int64
	Credits        int64     // purchased or admin-granted tokens, not reset
	BalanceAlerted time.Time // grant period in which EventBalanceLow was sent
	BalanceRefused time.Time // grant period in which EventInsufficientBalance was sent
}

// WindowSnapshot is the persisted state of one window counter.
type WindowSnapshot struct {
	Name     string
	Start    time.Time // start of the current window
	Current  int64     // usage in the current window
	Previous int64     // usage in the window before (sliding estimate)
	Next     int64     // usage reserved in the next window (max_delay)
	Warned   bool      // EventThreshold sent for this window
	Breached bool      // EventBreach sent for this window
}

// Profile is a subject's run-time overrides, set through SetProfile (the
// admin API). The zero value overrides nothing.
type Profile struct {
	Tier  Tier
	Roles []string
	Team  string
	// Limits override or add limits for this subject only.
	Limits []LimitConfig
}
