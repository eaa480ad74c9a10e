package telemetry

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// Outcome is the value of the quota.decision attribute and the decision
// metric label.
type Outcome string

// The three outcomes of a Check.
const (
	OutcomeAllow Outcome = "allow"
	OutcomeDeny  Outcome = "deny"
	// OutcomeError means no decision could be made; FailureModeApplied
	// says whether the request was then let through (open) or not (closed).
	OutcomeError Outcome = "error"
)

// Decision is what Record needs to know about one Check, engine-free. The
// zero value of each field means "not known" and leaves its attribute out,
// except for the int64 counters, which are always recorded.
type Decision struct {
	Outcome  Outcome
	Reason   string // "ok", "window_exceeded", ...
	Tier     string
	Priority string
	Action   string
	Workflow string
	// Cost is the token cost of the request; Charged is what was deducted
	// (Cost when allowed, 0 otherwise), the tokens-charged metric.
	Cost, Charged int64
	// Units is the request's size in the action's unit (words).
	Units int64
	// LimitName, Limit, Remaining and Reset describe the binding limit
	// (the one that refused, or the one with the least remaining).
	// An empty LimitName leaves them all out.
	LimitName        string
	Limit, Remaining int64
	Reset            time.Time
	// BalanceAfter is the token balance after the decision, recorded when
	// HasBalance.
	BalanceAfter int64
	HasBalance   bool
	// DecisionID is the UUID that ties the span to the ledger and the
	// Envoy access log.
	DecisionID string
	// FailureModeApplied is "open" or "closed" when Outcome is
	// OutcomeError, empty otherwise.
	FailureModeApplied string
	// Subject is the caller's id; it is hashed unless RawSubject is set.
	Subject string
	// Method and Path are the HTTP request's; the query is stripped from
	// Path.
	Method, Path string
	// HTTPStatus is the status quotagate answered (200 for an allow).
	HTTPStatus int
	// Message is the text sent to the client on a rejection.
	Message string
	// Err is why no decision could be made (OutcomeError), for operators.
	Err error
	// Phases are slow steps taken while deciding (a store load on a cache
	// miss), recorded as child spans of quota.check when it is sampled.
	Phases []Phase
}

// Phase is one timed step inside a Check, such as "quota.store.load".
type Phase struct {
	Name     string
	Start    time.Time
	Duration time.Duration
	Err      error
}

// Span attribute keys, created once.
const (
	keyDecision    = attribute.Key("quota.decision")
	keyReason      = attribute.Key("quota.reason")
	keyTier        = attribute.Key("quota.tier")
	keyPriority    = attribute.Key("quota.priority")
	keyAction      = attribute.Key("quota.action")
	keyWorkflow    = attribute.Key("quota.workflow")
	keyCost        = attribute.Key("quota.cost")
	keyUnits       = attribute.Key("quota.units")
	keyLimitName   = attribute.Key("quota.limit.name")
	keyLimit       = attribute.Key("quota.limit")
	keyRemaining   = attribute.Key("quota.remaining")
	keyReset       = attribute.Key("quota.reset")
	keyBalance     = attribute.Key("quota.balance_after")
	keyDecisionID  = attribute.Key("quota.decision_id")
	keyFailureMode = attribute.Key("quota.failure_mode_applied")
	keySubjectHash = attribute.Key("quota.subject_hash")
	keySubject     = attribute.Key("quota.subject")
	keyMessage     = attribute.Key("quota.message")
	keyMethod      = attribute.Key("http.request.method")
	keyPath        = attribute.Key("url.path")
	keyStatus      = attribute.Key("http.response.status_code")
)

// Metric attribute keys.
const (
	mkTier     = attribute.Key("tier")
	mkDecision = attribute.Key("decision")
	mkReason   = attribute.Key("reason")
	mkAction   = attribute.Key("action")
	mkLimit    = attribute.Key("limit")
	mkOp       = attribute.Key("op")
	mkOutcome  = attribute.Key("outcome")
)
