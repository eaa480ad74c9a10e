package extauthz

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func hourly(n int64) []engine.LimitConfig {
	return []engine.LimitConfig{{Name: "hour", Period: engine.Period{Calendar: "hour", Every: time.Hour}, Max: n}}
}

func month() engine.Period { return engine.Period{Calendar: "month", Every: 30 * 24 * time.Hour} }

// testEngineRules are the example configuration's tiers with token grants
// and its prices.
func testEngineRules() engine.Rules {
	return engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"freemium":   {Priority: engine.PriorityLow, Limits: hourly(10), Tokens: engine.TokenGrant{Amount: 20, Period: month()}, Features: []string{"translate"}, UpgradeURL: "https://example.com/upgrade"},
			"standard":   {Priority: engine.PriorityMedium, Limits: hourly(100), Tokens: engine.TokenGrant{Amount: 1000, Period: month()}},
			"enterprise": {Priority: engine.PriorityHigh, Limits: hourly(500), Tokens: engine.TokenGrant{Unlimited: true}},
		},
		DefaultTier: "freemium",
		Actions: map[string]engine.ActionConfig{
			"translate": {PerThousand: 5, Unit: "words"},
			"summarize": {PerThousand: 2, Unit: "words"},
		},
		Users:  map[string]engine.UserConfig{"sam": {Tier: "standard"}, "erin": {Tier: "enterprise"}},
		Alerts: engine.AlertConfig{ThresholdPercent: 90},
	}
}

// newTestServer is a Server with the test engine and clock c, deciding
// under p; p without identity sources trusts the JWT and the x-user-id
// header.
func newTestServer(t testing.TB, c *clock, p Policy) *Server {
	t.Helper()
	return newTestServerWith(t, c, Options{}, p)
}

// newTestServerWith is newTestServer wired by opts, whose clock is c.
func newTestServerWith(t testing.TB, c *clock, opts Options, p Policy) *Server {
	t.Helper()
	eng, err := engine.New(testEngineRules(), engine.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts.Now = c.Now
	if p.Identity.Sources == nil {
		p.Identity = IdentityOptions{Sources: []Source{SourceJWT, SourceHeader}, HeaderTrusted: true}
	}
	s, err := NewServer(eng, opts, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func userInput(user, action, body string) Input {
	h := map[string]string{"x-user-id": user, "content-length": strconv.Itoa(len(body))}
	if user == "" {
		delete(h, "x-user-id")
	}
	return Input{Method: "POST", Path: "/v1/" + action, Headers: h, Body: body, ContentLength: int64(len(body)),
		ContextExtensions: map[string]string{"action": action}}
}

func TestDecideWindow(t *testing.T) {
	c := &clock{now: t0} // 10:30, so the hour resets in 30 minutes
	s := newTestServer(t, c, Policy{UpgradeURL: func(engine.Tier) string { return "https://example.com/upgrade" }})
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		v := s.Decide(ctx, userInput("fred", "", ""))
		if !v.Allowed {
			t.Fatalf("call %d denied: %s", i, v.Body)
		}
		warning, _ := header(v.Headers, HeaderWarning)
		if want := i >= 9; (warning != "") != want {
			t.Errorf("call %d: warning %q, want one: %v", i, warning, want)
		}
		if i == 9 && warning != "Approaching hourly limit." {
			t.Errorf("call 9 warning = %q", warning)
		}
	}
	c.Set(t0.Add(10 * time.Second))
	v := s.Decide(ctx, userInput("fred", "", ""))
	if v.Allowed || v.Status != 429 {
		t.Fatalf("call 11: allowed %v status %d", v.Allowed, v.Status)
	}
	if got, _ := header(v.Headers, HeaderRetryAfter); got != "1790" {
		t.Errorf("Retry-After = %s, want 1790 (until 11:00)", got)
	}
	var body windowBody
	if err := json.Unmarshal(v.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Message != "Quota exceeded. Upgrade your plan or wait for the reset." || body.Limit != 10 || body.Remaining != 0 ||
		body.Reset != "2026-11-27T11:00:00Z" || body.RetryAfterSeconds != 1790 || body.UpgradeURL == "" || body.DecisionID != v.Decision.ID.String() {
		t.Errorf("body = %s", v.Body)
	}
}

func TestDecideCosts(t *testing.T) {
	words3000 := strings.Repeat("word ", 3000)
	tests := []struct {
		name, user, action string
		wantCost           int64
	}{
		{name: "translate 3000 words", user: "sam", action: "translate", wantCost: 15},
		{name: "summarize 3000 words", user: "sam", action: "summarize", wantCost: 6},
		{name: "plain call", user: "sam", action: "", wantCost: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, &clock{now: t0}, Policy{})
			v := s.Decide(context.Background(), userInput(tt.user, tt.action, words3000))
			if !v.Allowed || v.Decision.Cost != tt.wantCost || v.Decision.Units != 3000 {
				t.Fatalf("allowed %v cost %d units %d, want cost %d", v.Allowed, v.Decision.Cost, v.Decision.Units, tt.wantCost)
			}
			if got, _ := header(v.Headers, HeaderBalance); got != strconv.FormatInt(1000-tt.wantCost, 10) {
				t.Errorf("balance header = %s, want %d", got, 1000-tt.wantCost)
			}
		})
	}
}

func TestDecideInsufficientBalance(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{})
	ctx := context.Background()
	// freemium has 20 tokens: 3000 words cost 15, leaving 5; 2000 more cost 10.
	if v := s.Decide(ctx, userInput("fay", "translate", strings.Repeat("w ", 3000))); !v.Allowed {
		t.Fatalf("first translate denied: %s", v.Body)
	}
	v := s.Decide(ctx, userInput("fay", "translate", strings.Repeat("w ", 2000)))
	if v.Allowed || v.Status != 402 || v.Code != CodeInsufficientBalance {
		t.Fatalf("allowed %v status %d code %s", v.Allowed, v.Status, v.Code)
	}
	if got, _ := header(v.Headers, HeaderBalance); got != "5" {
		t.Errorf("balance on refusal = %s, want 5", got)
	}
	// The refusal charged nothing: 1000 words (5 tokens) still fit exactly.
	v = s.Decide(ctx, userInput("fay", "translate", strings.Repeat("w ", 1000)))
	if got, _ := header(v.Headers, HeaderBalance); !v.Allowed || got != "0" {
		t.Errorf("after refusal: allowed %v balance %s, want allowed with 0 left", v.Allowed, got)
	}
}

// TestRefusalsShareOneShape checks, on a real engine, that 429 and 402
// answers (413: TestFuzzCheckSeedsDecide) carry the same fields: RateLimit headers, Retry-After and
// retry_after_seconds exactly when waiting helps, and a detail; and that
// a 401 names no tier anywhere.
func TestRefusalsShareOneShape(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{})
	ctx := context.Background()
	// fay (freemium: 10 calls an hour, 20 tokens a month) spends 15 of her
	// 20 tokens, then asks for 10 more (refilled on the 1st: wait), then
	// for 25 (no refill covers it: no wait).
	if v := s.Decide(ctx, userInput("fay", "translate", strings.Repeat("w ", 3000))); !v.Allowed {
		t.Fatalf("first translate denied: %s", v.Body)
	}
	type refusal struct {
		RetryAfterSeconds *int64 `json:"retry_after_seconds"`
		Detail            string `json:"detail"`
		Refill            string `json:"refill"`
	}
	tests := []struct {
		name       string
		in         Input
		wantStatus int
		wantRetry  bool
		detail     string
	}{
		{name: "402 refilled on the 1st", in: userInput("fay", "translate", strings.Repeat("w ", 2000)), wantStatus: 402, wantRetry: true, detail: "The balance refills to 20 tokens on 2026-12-01T00:00:00Z"},
		{name: "402 no refill covers it", in: userInput("fay", "translate", strings.Repeat("w ", 5000)), wantStatus: 402, detail: "waiting will not help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := s.Decide(ctx, tt.in)
			if v.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", v.Status, tt.wantStatus, v.Body)
			}
			for _, h := range []string{HeaderRateLimit, HeaderRateLimitPolicy, HeaderDecisionID} {
				if _, ok := header(v.Headers, h); !ok {
					t.Errorf("no %s header: %v", h, v.Headers)
				}
			}
			ra, hasRA := header(v.Headers, HeaderRetryAfter)
			var b refusal
			if err := json.Unmarshal(v.Body, &b); err != nil || b.RetryAfterSeconds == nil {
				t.Fatalf("body %s: %v, want retry_after_seconds", v.Body, err)
			}
			if hasRA != tt.wantRetry || (*b.RetryAfterSeconds > 0) != tt.wantRetry || (hasRA && ra != strconv.FormatInt(*b.RetryAfterSeconds, 10)) {
				t.Errorf("Retry-After %q (%v), retry_after_seconds %d; want a retry: %v", ra, hasRA, *b.RetryAfterSeconds, tt.wantRetry)
			}
			if !strings.Contains(b.Detail, tt.detail) {
				t.Errorf("detail %q, want it to say %q", b.Detail, tt.detail)
			}
		})
	}
	for range 9 { // fay's calls 2 to 10 of the hour, then the 11th
		s.Decide(ctx, userInput("fay", "", ""))
	}
	v := s.Decide(ctx, userInput("fay", "", ""))
	if ra, _ := header(v.Headers, HeaderRetryAfter); v.Status != 429 || ra != "1800" || !strings.Contains(string(v.Body), `"detail":"The \"hour\" limit allows 10 per hour`) {
		t.Errorf("429: status %d Retry-After %q body %s", v.Status, ra, v.Body)
	}
	v = s.Decide(ctx, userInput("", "translate", "w"))
	if _, ok := header(v.Headers, HeaderTier); v.Status != 401 || ok || v.Metadata.Tier != "" || v.Decision.Tier != "" {
		t.Errorf("401 names tier: header %v metadata %q decision %q", ok, v.Metadata.Tier, v.Decision.Tier)
	}
}

func TestDecideIdentity(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{StripHeaders: []string{"x-tier", "x-quota-tier"}})
	ctx := context.Background()

	v := s.Decide(ctx, userInput("", "translate", "hello"))
	if v.Allowed || v.Status != 401 || !strings.Contains(string(v.Body), `"sources_tried":["jwt","header"]`) {
		t.Errorf("no identity: status %d body %s", v.Status, v.Body)
	}

	in := userInput("fred", "translate", "hello")
	in.Headers["x-tier"] = "enterprise"
	in.Headers["x-quota-tier"] = "enterprise"
	v = s.Decide(ctx, in)
	if !v.Allowed || v.Decision.Tier != "freemium" {
		t.Fatalf("spoofed tier header: allowed %v tier %s", v.Allowed, v.Decision.Tier)
	}
	if strings.Join(v.RemoveHeaders, ",") != "x-tier" {
		t.Errorf("RemoveHeaders = %v", v.RemoveHeaders)
	}
	if got, _ := header(v.UpstreamHeaders, HeaderTier); got != "freemium" {
		t.Errorf("upstream tier = %s", got)
	}

	in = userInput("", "summarize", "hello")
	in.JWT = Claims{Subject: "jay", Tier: "enterprise"}
	v = s.Decide(ctx, in)
	if !v.Allowed || v.Decision.Tier != "enterprise" || v.Identity != SourceJWT {
		t.Errorf("jwt tier claim: allowed %v tier %s source %s", v.Allowed, v.Decision.Tier, v.Identity)
	}
}

func TestDecideObserve(t *testing.T) {
	var calls int
	var gotStart time.Time
	var gotCode string
	s := newTestServerWith(t, &clock{now: t0}, Options{Observe: func(ctx context.Context, start time.Time, in *Input, v *Verdict) {
		calls++
		gotStart, gotCode = start, v.Code
	}}, Policy{})
	s.Decide(context.Background(), userInput("fred", "summarize", "hello"))
	if calls != 1 || !gotStart.Equal(t0) || gotCode != CodeFeatureNotInPlan {
		t.Errorf("Observe called %d times, start %v, code %s", calls, gotStart, gotCode)
	}
}

func TestDecideTruncatedWithoutLength(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{})
	in := userInput("sam", "translate", "some words")
	in.BodyTruncated, in.ContentLength = true, -1
	v := s.Decide(context.Background(), in)
	if v.Allowed || v.Status != 411 || v.Code != CodeLengthRequired {
		t.Errorf("status %d code %s", v.Status, v.Code)
	}
}

// TestSetPolicy: a refused policy changes nothing, an accepted one decides
// the next request, and the Observe hook given at construction sees every
// decision, before and after the reload.
func TestSetPolicy(t *testing.T) {
	var observed []string
	s := newTestServerWith(t, &clock{now: t0}, Options{Observe: func(_ context.Context, _ time.Time, _ *Input, v *Verdict) {
		observed = append(observed, v.Code)
	}}, Policy{Identity: IdentityOptions{Sources: []Source{SourceHeader}}})
	ctx := context.Background()
	if v := s.Decide(ctx, userInput("sam", "", "")); v.Status != 401 {
		t.Fatalf("untrusted header: status %d, want 401", v.Status)
	}
	if err := s.SetPolicy(Policy{InsufficientBalanceStatus: 200}); err == nil {
		t.Fatal("SetPolicy accepted status 200 for a denial")
	}
	if v := s.Decide(ctx, userInput("sam", "", "")); v.Status != 401 {
		t.Fatalf("a rejected SetPolicy changed the policy: status %d", v.Status)
	}
	if err := s.SetPolicy(Policy{Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}}); err != nil {
		t.Fatal(err)
	}
	if v := s.Decide(ctx, userInput("sam", "", "")); !v.Allowed {
		t.Errorf("after reload: status %d, want allowed", v.Status)
	}
	want := []string{CodeUnauthenticated, CodeUnauthenticated, CodeOK}
	if !slices.Equal(observed, want) {
		t.Errorf("observed %q, want %q: the hook must survive a reload", observed, want)
	}
}

// TestPolicyValidate: Validate refuses what NewServer and SetPolicy refuse,
// and names the setting.
func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		wantErr string // empty: valid
	}{
		{name: "zero value", p: Policy{}},
		{name: "status 429", p: Policy{InsufficientBalanceStatus: 429}},
		{name: "status 200", p: Policy{InsufficientBalanceStatus: 200}, wantErr: "insufficient balance status 200"},
		{name: "words per byte above 1", p: Policy{WordsPerByte: 2}, wantErr: "words per byte 2"},
		{name: "negative max body bytes", p: Policy{MaxBodyBytes: -1}, wantErr: "max body bytes -1"},
	}
	eng, err := engine.New(testEngineRules(), engine.Options{Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			_, newErr := NewServer(eng, Options{}, tt.p)
			if (err == nil) != (newErr == nil) {
				t.Errorf("Validate = %v but NewServer = %v", err, newErr)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
