package extauthz

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/quotagate/quotagate/engine"
)

var t0 = time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC)

// testPolicy is p with its defaults applied, for the tests that build
// verdicts without an engine.
func testPolicy(t testing.TB, p Policy) *policy {
	t.Helper()
	pol, err := newPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

var decisionID = uuid.MustParse("01900000-0000-7000-8000-000000000001")

func hourBinding(limit, used int64) engine.LimitStatus {
	return engine.LimitStatus{Name: "hour", Period: engine.Period{Calendar: "hour", Every: time.Hour},
		Limit: limit, Used: used, Remaining: max(limit-used, 0), Reset: t0.Add(30 * time.Minute)}
}

func header(hs []Header, key string) (string, bool) {
	for _, h := range hs {
		if h.Key == key {
			return h.Value, true
		}
	}
	return "", false
}

func TestAllowHeaders(t *testing.T) {
	p := testPolicy(t, Policy{StripHeaders: []string{"X-Tier", "x-quota-tier", "x-user-tier"}})
	v := Verdict{Decision: engine.Decision{ID: decisionID, Allowed: true, Tier: "standard", Action: "translate",
		Cost: 15, Units: 3000, Balance: 985, HasBalance: true, Binding: hourBinding(100, 91), HasBinding: true,
		Warning: "Approaching hourly limit."}}
	in := Input{Headers: map[string]string{"x-tier": "enterprise", "x-quota-tier": "enterprise"}}
	p.allow(t0, &in, &v)

	want := map[string]string{
		HeaderDecisionID:      decisionID.String(),
		HeaderRateLimitPolicy: `"hour";q=100;w=3600`,
		HeaderRateLimit:       `"hour";r=9;t=1800`,
		HeaderBalance:         "985",
		HeaderCost:            "15",
		HeaderWarning:         "Approaching hourly limit.",
	}
	for k, w := range want {
		if got, _ := header(v.Headers, k); got != w {
			t.Errorf("client header %s = %q, want %q", k, got, w)
		}
	}
	if got, _ := header(v.UpstreamHeaders, HeaderTier); got != "standard" {
		t.Errorf("upstream %s = %q, want the decided tier", HeaderTier, got)
	}
	if strings.Join(v.RemoveHeaders, ",") != "x-tier" {
		t.Errorf("RemoveHeaders = %v, want [x-tier] (x-quota-tier is overwritten, x-user-tier absent)", v.RemoveHeaders)
	}
	if !v.Allowed || v.Status != 200 || v.Body != nil {
		t.Errorf("verdict = allowed %v status %d body %q", v.Allowed, v.Status, v.Body)
	}
	m := v.Metadata
	if m.DecisionID != decisionID.String() || m.Decision != "allow" || m.Reason != "ok" || m.Tier != "standard" || m.Cost != 15 || m.Action != "translate" {
		t.Errorf("metadata = %+v", m)
	}
}

func TestDeny(t *testing.T) {
	upgrade := func(engine.Tier) string { return "https://example.com/upgrade" }
	tests := []struct {
		name       string
		policy     Policy
		d          engine.Decision
		wantStatus int
		wantBody   string
		wantRetry  string
		// wantPolicy and wantRateLimt, when set, are the RateLimit fields.
		wantPolicy, wantRateLimt string
	}{
		{
			name: "window exceeded",
			d: engine.Decision{Reason: engine.ReasonWindowExceeded, Tier: "freemium",
				Message: "Quota exceeded. Upgrade your plan or wait for the reset.", Binding: hourBinding(10, 10), HasBinding: true,
				RetryAfter: 30 * time.Minute},
			wantStatus: 429,
			wantBody: `{"error":"quota_exceeded","message":"Quota exceeded. Upgrade your plan or wait for the reset.","limit_name":"hour","limit":10,"remaining":0,` +
				`"reset":"2026-11-27T11:00:00Z","retry_after_seconds":1800,"detail":"The \"hour\" limit allows 10 per hour and has 0 left; this request fits again at 2026-11-27T11:00:00Z, in 30 minutes. Retry then.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
			wantRetry: "1800",
		},
		{
			name: "retry after from reset when engine gives none",
			d: engine.Decision{Reason: engine.ReasonWindowExceeded, Tier: "freemium", Message: "m",
				Binding: hourBinding(10, 10), HasBinding: true},
			wantStatus: 429,
			wantBody: `{"error":"quota_exceeded","message":"m","limit_name":"hour","limit":10,"remaining":0,"reset":"2026-11-27T11:00:00Z",` +
				`"retry_after_seconds":1800,"detail":"The \"hour\" limit allows 10 per hour and has 0 left; this request fits again at 2026-11-27T11:00:00Z, in 30 minutes. Retry then.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
			wantRetry: "1800",
		},
		{
			name:       "insufficient balance default status",
			d:          engine.Decision{Reason: engine.ReasonInsufficientBalance, Tier: "freemium", Message: "m", Cost: 15, Balance: 4, HasBalance: true},
			wantStatus: 402,
			wantBody: `{"error":"insufficient_balance","message":"m","cost":15,"balance":4,"grant":0,"refill":"","retry_after_seconds":0,` +
				`"detail":"This request costs 15 tokens and the balance is 4; the balance is not refilled, so waiting will not help. Add credits or upgrade your plan.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
		},
		{
			name: "insufficient balance refilled weeks ahead",
			d: engine.Decision{Reason: engine.ReasonInsufficientBalance, Tier: "freemium", Message: "m", Cost: 15, Balance: 4, HasBalance: true,
				Grant: 1000, GrantPeriod: engine.Period{Calendar: "month", Every: 30 * 24 * time.Hour},
				Refill: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), RetryAfter: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Sub(t0)},
			wantStatus: 402,
			wantBody: `{"error":"insufficient_balance","message":"m","cost":15,"balance":4,"grant":1000,"refill":"2026-12-01T00:00:00Z","retry_after_seconds":307800,` +
				`"detail":"This request costs 15 tokens and the balance is 4. The balance refills to 1000 tokens on 2026-12-01T00:00:00Z, in 4 days; retry then, or add credits or upgrade your plan to go on now.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
			wantRetry:    "307800",
			wantPolicy:   `"tokens";q=1000;w=2592000`,
			wantRateLimt: `"tokens";r=4;t=307800`,
		},
		{
			name: "insufficient balance no refill covers",
			d: engine.Decision{Reason: engine.ReasonInsufficientBalance, Tier: "freemium", Message: "m", Cost: 1500, Balance: 4, HasBalance: true,
				Grant: 1000, GrantPeriod: engine.Period{Calendar: "month", Every: 30 * 24 * time.Hour},
				Refill: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
			wantStatus: 402,
			wantBody: `{"error":"insufficient_balance","message":"m","cost":1500,"balance":4,"grant":1000,"refill":"2026-12-01T00:00:00Z","retry_after_seconds":0,` +
				`"detail":"This request costs 1500 tokens; the balance is 4, and a refill to the grant of 1000 tokens plus the credits does not cover it, so waiting will not help. Add credits or upgrade your plan.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
			wantPolicy:   `"tokens";q=1000;w=2592000`,
			wantRateLimt: `"tokens";r=4;t=307800`,
		},
		{
			name: "too large for a limit",
			d: engine.Decision{Reason: engine.ReasonRequestTooLarge, Tier: "freemium", Message: "m", Amount: 700000,
				Binding: engine.LimitStatus{Name: "translate-words", Limit: 20000, Period: engine.Period{Calendar: "day", Every: 24 * time.Hour},
					Remaining: 20000, Reset: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}, HasBinding: true},
			wantStatus: 413,
			wantBody: `{"error":"request_too_large","message":"m","limit_name":"translate-words","limit":20000,"amount":700000,` +
				`"detail":"This request counts 700000 against the \"translate-words\" limit, which allows 20000 per day, so it can never fit and waiting will not help. Send a smaller request.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
			wantPolicy:   `"translate-words";q=20000;w=86400`,
			wantRateLimt: `"translate-words";r=20000;t=48600`,
		},
		{
			name:       "too large to count",
			d:          engine.Decision{Reason: engine.ReasonRequestTooLarge, Tier: "freemium", Message: "m"},
			wantStatus: 413,
			wantBody: `{"error":"request_too_large","message":"m","limit_name":"","limit":9007199254740991,"amount":0,` +
				`"detail":"This request's size or cost exceeds 9007199254740991, the largest quantity quotagate counts, so it can never be admitted and waiting will not help. Send a smaller request.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
		},
		{
			name:       "insufficient balance configured status",
			policy:     Policy{InsufficientBalanceStatus: 429},
			d:          engine.Decision{Reason: engine.ReasonInsufficientBalance, Tier: "freemium", Message: "m", Cost: 15, Balance: 4, HasBalance: true},
			wantStatus: 429,
			wantBody: `{"error":"insufficient_balance","message":"m","cost":15,"balance":4,"grant":0,"refill":"","retry_after_seconds":0,` +
				`"detail":"This request costs 15 tokens and the balance is 4; the balance is not refilled, so waiting will not help. Add credits or upgrade your plan.",` +
				`"decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
		},
		{
			name:       "feature not in plan",
			d:          engine.Decision{Reason: engine.ReasonFeatureNotInPlan, Tier: "freemium", Action: "summarize", RequiredTier: "standard", Message: "m"},
			wantStatus: 403,
			wantBody:   `{"error":"feature_not_in_plan","message":"m","feature":"summarize","tier":"freemium","required_tier":"standard","decision_id":"` + decisionID.String() + `","upgrade_url":"https://example.com/upgrade"}`,
		},
		{
			name:       "shed",
			d:          engine.Decision{Reason: engine.ReasonShed, Tier: "freemium", Message: "m", RetryAfter: 1500 * time.Millisecond},
			wantStatus: 503,
			wantBody:   `{"error":"overloaded","message":"m","retry_after_seconds":2,"decision_id":"` + decisionID.String() + `"}`,
			wantRetry:  "2",
		},
		{
			name:       "no identity lists the sources",
			policy:     Policy{Identity: IdentityOptions{Sources: []Source{SourceJWT, SourceHeader}}},
			d:          engine.Decision{Reason: engine.ReasonNoIdentity, Message: "Request has no identity."},
			wantStatus: 401,
			wantBody:   `{"error":"unauthenticated","message":"Request has no identity.","sources_tried":["jwt","header"],"decision_id":"` + decisionID.String() + `"}`,
		},
		{
			name:       "unknown subject",
			d:          engine.Decision{Reason: engine.ReasonUnknownSubject, Message: "Unknown subject."},
			wantStatus: 403,
			wantBody:   `{"error":"unknown_subject","message":"Unknown subject.","decision_id":"` + decisionID.String() + `"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.policy.UpgradeURL = upgrade
			p := testPolicy(t, tt.policy)
			tt.d.ID = decisionID
			v := Verdict{Decision: tt.d}
			p.deny(t0, &v)
			if v.Allowed || v.Status != tt.wantStatus {
				t.Errorf("allowed %v status %d, want denied %d", v.Allowed, v.Status, tt.wantStatus)
			}
			if string(v.Body) != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", v.Body, tt.wantBody)
			}
			if got, _ := header(v.Headers, HeaderRetryAfter); got != tt.wantRetry {
				t.Errorf("retry-after = %q, want %q", got, tt.wantRetry)
			}
			if tt.wantPolicy != "" {
				p, _ := header(v.Headers, HeaderRateLimitPolicy)
				r, _ := header(v.Headers, HeaderRateLimit)
				if p != tt.wantPolicy || r != tt.wantRateLimt {
					t.Errorf("ratelimit-policy %q ratelimit %q, want %q and %q", p, r, tt.wantPolicy, tt.wantRateLimt)
				}
			}
			if got, _ := header(v.Headers, "content-type"); got != "application/json" {
				t.Errorf("content-type = %q", got)
			}
			var body map[string]any
			if err := json.Unmarshal(v.Body, &body); err != nil || body["error"] != v.Code {
				t.Errorf("body error %v does not match Code %q (%v)", body["error"], v.Code, err)
			}
			if v.Metadata.Decision != "deny" || v.Metadata.Reason != tt.d.Reason.String() {
				t.Errorf("metadata = %+v", v.Metadata)
			}
		})
	}
}

func TestFailure(t *testing.T) {
	errStore := errors.New("store: connection refused")
	tests := []struct {
		name        string
		mode        engine.FailureMode
		wantAllowed bool
		wantStatus  int
	}{
		{name: "open allows and says so", mode: engine.FailOpen, wantAllowed: true, wantStatus: 200},
		{name: "closed refuses with 503", mode: engine.FailClosed, wantAllowed: false, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{logger: slog.New(slog.DiscardHandler)}
			var v Verdict
			d := engine.Decision{Tier: "standard", FailureMode: tt.mode}
			s.failure(t0, &d, errStore, &v)
			if v.Allowed != tt.wantAllowed || v.Status != tt.wantStatus {
				t.Fatalf("allowed %v status %d", v.Allowed, v.Status)
			}
			if got, _ := header(v.Headers, HeaderFailureMode); got != tt.mode.String() {
				t.Errorf("%s = %q, want %q", HeaderFailureMode, got, tt.mode)
			}
			if v.Decision.ID == (uuid.UUID{}) || v.Metadata.DecisionID == "" {
				t.Error("no decision id")
			}
			if v.FailureModeApplied != tt.mode.String() || !errors.Is(v.Err, errStore) {
				t.Errorf("FailureModeApplied %q, Err %v", v.FailureModeApplied, v.Err)
			}
			if !tt.wantAllowed && !strings.Contains(string(v.Body), `"failure_mode":"closed"`) {
				t.Errorf("body %s does not name the failure mode", v.Body)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	p := testPolicy(t, Policy{Routes: []Route{
		{PathPrefix: "/v1/translate", Method: "POST", Action: "translate"},
		{PathPrefix: "/v1/summarize", Action: "summarize", Workflow: "digest"},
	}})
	tests := []struct {
		name             string
		in               Input
		action, workflow string
	}{
		{name: "context extensions win", in: Input{Path: "/v1/translate", Method: "POST", ContextExtensions: map[string]string{"action": "summarize"}}, action: "summarize"},
		{name: "route by prefix and method", in: Input{Path: "/v1/translate/batch?x=1", Method: "post"}, action: "translate"},
		{name: "method mismatch", in: Input{Path: "/v1/translate", Method: "GET"}},
		{name: "any method", in: Input{Path: "/v1/summarize", Method: "PUT"}, action: "summarize", workflow: "digest"},
		{name: "query does not match prefix", in: Input{Path: "/x?/v1/translate", Method: "POST"}},
		{name: "workflow only extension", in: Input{Path: "/v1/translate", Method: "POST", ContextExtensions: map[string]string{"workflow": "nightly"}}, workflow: "nightly"},
		{name: "encoded letter", in: Input{Path: "/v1/%74ranslate", Method: "POST"}, action: "translate"},
		{name: "double slash", in: Input{Path: "//v1//translate", Method: "POST"}, action: "translate"},
		{name: "dot segments", in: Input{Path: "/v1/./x/../translate", Method: "POST"}, action: "translate"},
		{name: "escaped slash", in: Input{Path: "/v1%2Fsummarize", Method: "GET"}, action: "summarize", workflow: "digest"},
		{name: "upper case is another path", in: Input{Path: "/V1/summarize", Method: "GET"}},
		{name: "dot-dot out of a route", in: Input{Path: "/v1/translate/../other", Method: "POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, w, routed := p.route(&tt.in)
			if a != tt.action || w != tt.workflow || routed != (a != "" || w != "") {
				t.Errorf("route = %q, %q, %v; want %q, %q", a, w, routed, tt.action, tt.workflow)
			}
		})
	}
}

func TestUnits(t *testing.T) {
	p := testPolicy(t, Policy{})
	slow := testPolicy(t, Policy{WordsPerByte: 0.1})
	small := testPolicy(t, Policy{MaxBodyBytes: 100})
	tests := []struct {
		name     string
		p        *policy
		in       Input
		want     int64
		wantSize bodySize
	}{
		{name: "whole body", p: p, in: Input{Body: "one two three", ContentLength: 13}, want: 3},
		{name: "truncated priced at bound", p: p, in: Input{Body: "one two ", BodyTruncated: true, ContentLength: 108}, want: 52},
		{name: "truncated, low rate raised to observed density", p: slow, in: Input{Body: "a b c d ", BodyTruncated: true, ContentLength: 108}, want: 54},
		{name: "truncated without length", p: p, in: Input{Body: "one two", BodyTruncated: true, ContentLength: -1}, wantSize: sizeUnknown},
		{name: "claimed length below what arrived", p: p, in: Input{Body: "one two three", BodyTruncated: true, ContentLength: 3}, want: 3},
		{name: "claimed length of MaxInt64", p: p, in: Input{Body: "one two", BodyTruncated: true, ContentLength: math.MaxInt64}, wantSize: sizeTooLarge},
		{name: "claimed length just above the limit", p: small, in: Input{Body: "one two", BodyTruncated: true, ContentLength: 101}, wantSize: sizeTooLarge},
		{name: "claimed length at the limit", p: small, in: Input{Body: "one two", BodyTruncated: true, ContentLength: 100}, want: 2 + 47},
		{name: "whole body above the limit", p: small, in: Input{Body: strings.Repeat("a ", 51)}, wantSize: sizeTooLarge},
		{name: "length ignored when not truncated", p: small, in: Input{Body: "one", ContentLength: math.MaxInt64}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, size := tt.p.units(&tt.in)
			if got != tt.want || size != tt.wantSize {
				t.Errorf("units = %d, %v; want %d, %v", got, size, tt.want, tt.wantSize)
			}
		})
	}
}

func TestRateLimitHeaderEscaping(t *testing.T) {
	d := engine.Decision{HasBinding: true, Binding: engine.LimitStatus{Name: `we"ird\name`, Limit: 5, Remaining: 1,
		Period: engine.Period{Every: 15 * time.Minute}, Reset: t0.Add(90 * time.Second)}}
	h := appendRateLimit(nil, &d, t0)
	if got, _ := header(h, HeaderRateLimitPolicy); got != `"we\"ird\\name";q=5;w=900` {
		t.Errorf("policy = %s", got)
	}
	if got, _ := header(h, HeaderRateLimit); got != `"we\"ird\\name";r=1;t=90` {
		t.Errorf("ratelimit = %s", got)
	}
}
