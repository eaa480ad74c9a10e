package extauthz

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/quotagate/quotagate/engine"
)

// Header names quotagate sets. They are lower case, as HTTP/2 requires.
const (
	HeaderDecisionID      = "x-quota-decision-id"
	HeaderTier            = "x-quota-tier"
	HeaderBalance         = "x-quota-balance"
	HeaderCost            = "x-quota-cost"
	HeaderWarning         = "x-quota-warning"
	HeaderFailureMode     = "x-quota-failure-mode"
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderRateLimit       = "ratelimit"
	HeaderRetryAfter      = "retry-after"
	headerContentType     = "content-type"
	contentTypeJSON       = "application/json"
)

// The "error" values of denial bodies.
const (
	CodeOK                  = "ok"
	CodeQuotaExceeded       = "quota_exceeded"
	CodeInsufficientBalance = "insufficient_balance"
	CodeFeatureNotInPlan    = "feature_not_in_plan"
	CodeOverloaded          = "overloaded"
	CodeUnauthenticated     = "unauthenticated"
	CodeUnknownSubject      = "unknown_subject"
	CodeLengthRequired      = "length_required"
	CodeRequestTooLarge     = "request_too_large"
	CodeNoRoute             = "no_route"
	CodeUnknownAction       = "unknown_action"
	CodeUnavailable         = "unavailable"
)

// Client messages quotagate writes itself; the engine writes the others.
const (
	msgUnavailable    = "The quota service could not decide, so the request is refused. Retry shortly."
	msgLengthRequired = "The request body was cut short by the proxy and has no valid Content-Length (a decimal number of bytes), so its cost cannot be bounded. Send the body's Content-Length."
	msgBodyTooLarge   = "Request too large: its body is larger than this service accepts. Send a smaller request."
	msgNoRoute        = "This request matches no metered route, so it is refused."
)

// allow fills v for an admitted decision made at now.
func (p *policy) allow(now time.Time, in *Input, v *Verdict) {
	d := &v.Decision
	id := d.ID.String()
	v.Allowed, v.Status, v.Code = true, 200, CodeOK
	// One block: up to six client headers, then the two upstream ones.
	buf := make([]Header, 8)
	h := append(buf[:0:6], Header{HeaderDecisionID, id})
	h = appendRateLimit(h, d, now)
	if d.HasBalance {
		h = append(h, Header{HeaderBalance, strconv.FormatInt(d.Balance, 10)})
	}
	if d.Cost > 0 {
		h = append(h, Header{HeaderCost, strconv.FormatInt(d.Cost, 10)})
	}
	if d.Warning != "" {
		h = append(h, Header{HeaderWarning, d.Warning})
	}
	v.Headers = h
	v.UpstreamHeaders = append(buf[6:6:8], Header{HeaderDecisionID, id}, Header{HeaderTier, string(d.Tier)})
	v.RemoveHeaders = p.spoofed(in)
	v.Metadata = metadataOf(d, id, "allow")
}

// spoofed returns the configured strip headers that the request carries,
// except those quotagate sets itself (setting one overwrites it).
func (p *policy) spoofed(in *Input) []string {
	var out []string
	for _, h := range p.strip {
		if _, ok := in.Headers[h]; ok && h != HeaderTier && h != HeaderDecisionID {
			out = append(out, h)
		}
	}
	return out
}

// deny fills v for a refusal decided by the engine. The quota refusals
// (429, 402, 413) share one shape: RateLimit headers for what refused the
// request, Retry-After and retry_after_seconds exactly when waiting will
// help, and a detail that says why and until when.
func (p *policy) deny(now time.Time, v *Verdict) {
	d := &v.Decision
	id := d.ID.String()
	retry := retryAfter(d, now)
	h := make([]Header, 0, 7)
	h = append(h, Header{headerContentType, contentTypeJSON}, Header{HeaderDecisionID, id})
	if d.Reason == engine.ReasonInsufficientBalance {
		h = appendBalanceRateLimit(h, d, now)
	} else {
		h = appendRateLimit(h, d, now)
	}
	if retry > 0 {
		h = append(h, Header{HeaderRetryAfter, strconv.FormatInt(retry, 10)})
	}
	var body any
	switch d.Reason {
	case engine.ReasonWindowExceeded:
		v.Status, v.Code = 429, CodeQuotaExceeded
		body = windowBody{CodeQuotaExceeded, d.Message, d.Binding.Name, d.Binding.Limit, d.Binding.Remaining,
			d.Binding.Reset.UTC().Format(time.RFC3339), retry, windowDetail(d, now, retry), id, p.upgradeURL(d.Tier)}
	case engine.ReasonInsufficientBalance:
		v.Status, v.Code = p.InsufficientBalanceStatus, CodeInsufficientBalance
		h = append(h, Header{HeaderBalance, strconv.FormatInt(d.Balance, 10)})
		body = balanceBody{CodeInsufficientBalance, d.Message, d.Cost, d.Balance, d.Grant, rfc3339(d.Refill),
			retry, balanceDetail(d, now, retry), id, p.upgradeURL(d.Tier)}
	case engine.ReasonRequestTooLarge:
		v.Status, v.Code = 413, CodeRequestTooLarge
		body = tooLargeDetail(d, id, p.upgradeURL(d.Tier))
	case engine.ReasonFeatureNotInPlan:
		v.Status, v.Code = 403, CodeFeatureNotInPlan
		feature := d.Action
		if feature == "" {
			feature = d.Workflow
		}
		body = featureBody{CodeFeatureNotInPlan, d.Message, feature, string(d.Tier), string(d.RequiredTier), id, p.upgradeURL(d.Tier)}
	case engine.ReasonShed:
		v.Status, v.Code = 503, CodeOverloaded
		body = overloadBody{CodeOverloaded, d.Message, retry, id}
	case engine.ReasonNoIdentity:
		v.Status, v.Code = 401, CodeUnauthenticated
		body = noIdentityBody{CodeUnauthenticated, d.Message, p.Identity.sourceNames(), id}
	case engine.ReasonUnknownAction:
		// The message is the neutral one the engine wrote; what is wrong
		// (an action without a price) is told to the operator in the log.
		v.Status, v.Code = 403, CodeUnknownAction
		body = plainBody{CodeUnknownAction, d.Message, id}
	default: // engine.ReasonUnknownSubject, and any reason added later
		v.Status, v.Code = 403, CodeUnknownSubject
		body = plainBody{CodeUnknownSubject, d.Message, id}
	}
	v.Headers = h
	v.Body = marshal(body)
	v.Metadata = metadataOf(d, id, "deny")
}

// failure fills v when the engine could not decide, by the tier's failure
// mode: open allows and says so, closed refuses with 503.
func (s *Server) failure(now time.Time, d *engine.Decision, err error, v *Verdict) {
	if d.ID == (uuid.UUID{}) {
		d.ID = newID()
	}
	v.Decision, v.Err = *d, err
	id := d.ID.String()
	mode := d.FailureMode.String()
	v.FailureModeApplied = mode
	s.logger.Warn("extauthz: no decision, applying failure mode",
		"decision_id", id, "failure_mode", mode, "tier", string(d.Tier), "error", err.Error())
	v.Metadata = metadataOf(d, id, "allow")
	v.Metadata.Reason, v.Metadata.FailureMode = "error", mode
	if d.FailureMode == engine.FailOpen {
		v.Allowed, v.Status, v.Code = true, 200, CodeOK
		v.Headers = []Header{{HeaderDecisionID, id}, {HeaderFailureMode, mode}}
		v.UpstreamHeaders = []Header{{HeaderDecisionID, id}, {HeaderFailureMode, mode}}
		return
	}
	v.Status, v.Code = 503, CodeUnavailable
	v.Metadata.Decision = "deny"
	v.Headers = []Header{{headerContentType, contentTypeJSON}, {HeaderDecisionID, id}, {HeaderFailureMode, mode}}
	v.Body = marshal(failureBody{CodeUnavailable, msgUnavailable, mode, id})
}

// bodyTooLarge refuses a request whose body, as claimed by content-length
// or as received, is larger than MaxBodyBytes: 413 request_too_large with
// no Retry-After, since no wait makes it smaller. req holds the caller's
// identity, for the record; nothing is charged.
func (p *policy) bodyTooLarge(req *engine.Request, in *Input, v *Verdict) {
	id := newID()
	d := &v.Decision
	d.ID, d.Reason, d.Subject, d.Action, d.Workflow = id, engine.ReasonRequestTooLarge, req.Subject, req.Action, req.Workflow
	size := max(in.ContentLength, int64(len(in.Body)))
	limit := p.MaxBodyBytes
	d.Message = msgBodyTooLarge
	v.Status, v.Code = 413, CodeRequestTooLarge
	v.Headers = []Header{{headerContentType, contentTypeJSON}, {HeaderDecisionID, id.String()}}
	v.Body = marshal(tooLargeBody{CodeRequestTooLarge, msgBodyTooLarge, "max_body_bytes", limit, size,
		fmt.Sprintf("The request body is %d bytes; quotagate prices bodies of up to %d bytes (pricing.max_body_bytes), so this request can never be admitted and waiting will not help. Send a smaller body.", size, limit),
		id.String(), ""})
	v.Metadata = Metadata{DecisionID: id.String(), Decision: "deny", Reason: engine.ReasonRequestTooLarge.String(),
		Action: req.Action, Workflow: req.Workflow}
}

// lengthRequired refuses a truncated body whose full size is unknown.
func lengthRequired(req *engine.Request, v *Verdict) {
	id := newID()
	d := &v.Decision
	d.ID, d.Reason, d.Subject, d.Action, d.Workflow = id, engine.ReasonLengthRequired, req.Subject, req.Action, req.Workflow
	d.Message = msgLengthRequired
	v.Status, v.Code = 411, CodeLengthRequired
	v.Headers = []Header{{headerContentType, contentTypeJSON}, {HeaderDecisionID, id.String()}}
	v.Body = marshal(plainBody{CodeLengthRequired, msgLengthRequired, id.String()})
	v.Metadata = Metadata{DecisionID: id.String(), Decision: "deny", Reason: CodeLengthRequired}
}

// noRoute refuses a request that matched no route under UnroutedDeny. It
// charges nothing.
func noRoute(req *engine.Request, v *Verdict) {
	id := newID()
	d := &v.Decision
	d.ID, d.Subject, d.Tier, d.Reason = id, req.Subject, req.Tier, engine.ReasonNoRoute
	d.Message = msgNoRoute
	v.Status, v.Code = 403, CodeNoRoute
	v.Headers = []Header{{headerContentType, contentTypeJSON}, {HeaderDecisionID, id.String()}}
	v.Body = marshal(plainBody{CodeNoRoute, msgNoRoute, id.String()})
	v.Metadata = Metadata{DecisionID: id.String(), Decision: "deny", Reason: CodeNoRoute, Tier: string(req.Tier)}
}

func (p *policy) upgradeURL(t engine.Tier) string {
	if p.UpgradeURL == nil {
		return ""
	}
	return p.UpgradeURL(t)
}

func metadataOf(d *engine.Decision, id, decision string) Metadata {
	return Metadata{DecisionID: id, Decision: decision, Reason: d.Reason.String(), Tier: string(d.Tier),
		Action: d.Action, Workflow: d.Workflow, Cost: d.Cost, Units: d.Units}
}

// appendRateLimit adds the RateLimit-Policy and RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers for the binding limit:
// `"hour";q=100;w=3600` and `"hour";r=42;t=1800`.
func appendRateLimit(h []Header, d *engine.Decision, now time.Time) []Header {
	if !d.HasBinding {
		return h
	}
	b := &d.Binding
	var buf [96]byte
	p := appendSFString(buf[:0], b.Name)
	p = append(p, ";q="...)
	p = strconv.AppendInt(p, b.Limit, 10)
	if w := int64(b.Period.Every / time.Second); w > 0 {
		p = append(p, ";w="...)
		p = strconv.AppendInt(p, w, 10)
	}
	policy := string(p)
	r := appendSFString(buf[:0], b.Name)
	r = append(r, ";r="...)
	r = strconv.AppendInt(r, max(b.Remaining, 0), 10)
	r = append(r, ";t="...)
	r = strconv.AppendInt(r, ceilSeconds(b.Reset.Sub(now)), 10)
	return append(h, Header{HeaderRateLimitPolicy, policy}, Header{HeaderRateLimit, string(r)})
}

// appendSFString appends s as a structured-field String (RFC 8941):
// quoted, with backslash and quote escaped, other non-printables dropped.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20 && c < 0x7f:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// retryAfter is the whole seconds, rounded up, before a retry can succeed:
// the engine's RetryAfter, else for a window refusal the binding limit's
// reset; 0 when no wait helps (a request too large, a cost no refill
// covers) or when unknown.
func retryAfter(d *engine.Decision, now time.Time) int64 {
	if d.RetryAfter > 0 {
		return ceilSeconds(d.RetryAfter)
	}
	if d.Reason == engine.ReasonWindowExceeded && d.HasBinding && d.Binding.Reset.After(now) {
		return ceilSeconds(d.Binding.Reset.Sub(now))
	}
	return 0
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(math.Ceil(d.Seconds()))
}

func newID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil { // only when the random source fails
		return uuid.New()
	}
	return id
}

// marshal encodes a denial body. The bodies are plain structs of strings and
// numbers, which cannot fail to encode.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"internal"}`)
	}
	return b
}

// windowBody is the 429 body. retry_after_seconds is 0 when no reset
// will admit the request; detail then says so.
type windowBody struct {
	Error             string `json:"error"`
	Message           string `json:"message"`
	LimitName         string `json:"limit_name"`
	Limit             int64  `json:"limit"`
	Remaining         int64  `json:"remaining"`
	Reset             string `json:"reset"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
	Detail            string `json:"detail"`
	DecisionID        string `json:"decision_id"`
	UpgradeURL        string `json:"upgrade_url"`
}

// balanceBody is the 402 body: grant is the periodic grant the balance is
// refilled to at refill (empty without one); retry_after_seconds is 0 when
// no refill covers the cost.
type balanceBody struct {
	Error             string `json:"error"`
	Message           string `json:"message"`
	Cost              int64  `json:"cost"`
	Balance           int64  `json:"balance"`
	Grant             int64  `json:"grant"`
	Refill            string `json:"refill"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
	Detail            string `json:"detail"`
	DecisionID        string `json:"decision_id"`
	UpgradeURL        string `json:"upgrade_url"`
}

// tooLargeBody is the 413 body: amount is what the request counts against
// the limit named limit_name, which allows limit; there is never a
// Retry-After or retry_after_seconds, since waiting does not help.
type tooLargeBody struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	LimitName  string `json:"limit_name"`
	Limit      int64  `json:"limit"`
	Amount     int64  `json:"amount"`
	Detail     string `json:"detail"`
	DecisionID string `json:"decision_id"`
	UpgradeURL string `json:"upgrade_url"`
}

type featureBody struct {
	Error        string `json:"error"`
	Message      string `json:"message"`
	Feature      string `json:"feature"`
	Tier         string `json:"tier"`
	RequiredTier string `json:"required_tier"`
	DecisionID   string `json:"decision_id"`
	UpgradeURL   string `json:"upgrade_url"`
}

type overloadBody struct {
	Error             string `json:"error"`
	Message           string `json:"message"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
	DecisionID        string `json:"decision_id"`
}

type noIdentityBody struct {
	Error        string   `json:"error"`
	Message      string   `json:"message"`
	SourcesTried []string `json:"sources_tried"`
	DecisionID   string   `json:"decision_id"`
}

type failureBody struct {
	Error       string `json:"error"`
	Message     string `json:"message"`
	FailureMode string `json:"failure_mode"`
	DecisionID  string `json:"decision_id"`
}

type plainBody struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	DecisionID string `json:"decision_id"`
}
