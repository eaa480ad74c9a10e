package e2e

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const seedMessage = "Quota exceeded. Upgrade your plan or wait for the reset."

func words(n int) string { return strings.Repeat("lorem ", n) }

// waitOutsideHourEdge avoids starting an hour-window test in the last
// seconds of an hour, where the window could reset mid-test.
func waitOutsideHourEdge() {
	now := time.Now().UTC()
	if left := now.Truncate(time.Hour).Add(time.Hour).Sub(now); left < 15*time.Second {
		time.Sleep(left + time.Second)
	}
}

func TestFreemiumEleventhCallIsRefused(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	waitOutsideHourEdge()
	req := envoyRequest{path: "/v1/things", method: "GET", headers: map[string]string{"x-user-id": "fiona"}}
	for i := 1; i <= 10; i++ {
		if resp := s.check(t, req); resp.GetOkResponse() == nil {
			t.Fatalf("call %d refused: %v", i, resp)
		}
	}
	resp := s.check(t, req)
	now := time.Now().UTC()
	denied := resp.GetDeniedResponse()
	if denied == nil || denied.GetStatus().GetCode() != 429 || codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("call 11 = %v, want 429 RESOURCE_EXHAUSTED", resp)
	}
	var body struct {
		Error             string `json:"error"`
		Message           string `json:"message"`
		Limit             int64  `json:"limit"`
		Remaining         int64  `json:"remaining"`
		Reset             string `json:"reset"`
		RetryAfterSeconds int64  `json:"retry_after_seconds"`
		DecisionID        string `json:"decision_id"`
		UpgradeURL        string `json:"upgrade_url"`
	}
	if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil {
		t.Fatalf("body %q: %v", denied.GetBody(), err)
	}
	nextHour := now.Truncate(time.Hour).Add(time.Hour)
	wantRetry := int64(math.Ceil(nextHour.Sub(now).Seconds()))
	h := headers(resp)
	retry, err := strconv.ParseInt(h["retry-after"], 10, 64)
	if err != nil || retry < wantRetry-2 || retry > wantRetry+2 {
		t.Errorf("Retry-After = %q, want about %d (seconds to %s)", h["retry-after"], wantRetry, nextHour.Format(time.RFC3339))
	}
	if body.Error != "quota_exceeded" || body.Message != seedMessage || body.Limit != 10 || body.Remaining != 0 ||
		body.Reset != nextHour.Format(time.RFC3339) || body.RetryAfterSeconds != retry ||
		body.DecisionID != h["x-quota-decision-id"] || body.UpgradeURL != "https://example.com/upgrade" {
		t.Errorf("body = %s", denied.GetBody())
	}
	if h["ratelimit-policy"] != `"hour";q=10;w=3600` || !strings.HasPrefix(h["ratelimit"], `"hour";r=0;t=`) {
		t.Errorf("RateLimit headers = %q / %q", h["ratelimit-policy"], h["ratelimit"])
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["decision_id"] != body.DecisionID || md["reason"] != "window_exceeded" || md["tier"] != "freemium" {
		t.Errorf("dynamic metadata = %v", md)
	}
}

func TestWordCosts(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	tests := []struct {
		name     string
		req      envoyRequest
		wantCost int64
	}{
		{name: "translate 3000 words costs 15", req: envoyRequest{path: "/v1/translate", action: "translate", body: words(3000)}, wantCost: 15},
		{name: "summarize 3000 words costs 6", req: envoyRequest{path: "/v1/summarize", action: "summarize", body: words(3000)}, wantCost: 6},
		{name: "summarize by route fallback", req: envoyRequest{path: "/v1/summarize/text", body: words(3000)}, wantCost: 6},
		{name: "unicode words", req: envoyRequest{path: "/v1/translate", action: "translate", body: strings.Repeat("naïve café 翻訳 ", 500)}, wantCost: 10},
	}
	balance := int64(20000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.headers = map[string]string{"x-user-id": "sam"}
			resp := s.check(t, tt.req)
			if resp.GetOkResponse() == nil {
				t.Fatalf("refused: %v", resp)
			}
			h := headers(resp)
			balance -= tt.wantCost
			if h["x-quota-cost"] != strconv.FormatInt(tt.wantCost, 10) || h["x-quota-balance"] != strconv.FormatInt(balance, 10) {
				t.Errorf("cost %q balance %q, want %d and %d", h["x-quota-cost"], h["x-quota-balance"], tt.wantCost, balance)
			}
			if md := resp.GetDynamicMetadata().AsMap(); md["cost"] != float64(tt.wantCost) {
				t.Errorf("metadata cost = %v", md["cost"])
			}
		})
	}
}

func TestInsufficientBalance(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	tina := map[string]string{"x-user-id": "tina"} // 20 tokens a month
	resp := s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: words(3000), headers: tina})
	if h := headers(resp); resp.GetOkResponse() == nil || h["x-quota-balance"] != "5" {
		t.Fatalf("first translate: %v", resp)
	}
	resp = s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: words(2000), headers: tina})
	denied := resp.GetDeniedResponse()
	if denied.GetStatus().GetCode() != 402 || codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("10 tokens with 5 left = %v, want 402", resp)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil {
		t.Fatal(err)
	}
	if body["error"] != "insufficient_balance" || body["balance"] != float64(5) || body["cost"] != float64(10) {
		t.Errorf("body = %s", denied.GetBody())
	}
	// The refusal charged nothing: exactly 5 tokens are still there.
	resp = s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: words(1000), headers: tina})
	if h := headers(resp); resp.GetOkResponse() == nil || h["x-quota-balance"] != "0" {
		t.Errorf("5 tokens after the refusal: %v", resp)
	}
}

func TestWarningAtNinetyPercent(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	req := envoyRequest{path: "/v1/things", method: "GET", headers: map[string]string{"x-user-id": "dana"}} // 10 calls a day
	for i := 1; i <= 10; i++ {
		resp := s.check(t, req)
		warning := headers(resp)["x-quota-warning"]
		switch {
		case i < 9 && warning != "":
			t.Errorf("call %d: early warning %q", i, warning)
		case i >= 9 && warning != "Approaching daily limit.":
			t.Errorf("call %d: warning %q, want %q", i, warning, "Approaching daily limit.")
		}
	}
}

func TestIdentity(t *testing.T) {
	s := startServer(t, "testdata/quota.yaml")
	t.Run("no identity is 401 naming the sources tried", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: "hi", headers: map[string]string{"x-api-key": "wrong"}})
		denied := resp.GetDeniedResponse()
		if denied.GetStatus().GetCode() != 401 || codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
			t.Fatalf("resp = %v", resp)
		}
		var body struct {
			Error        string   `json:"error"`
			SourcesTried []string `json:"sources_tried"`
		}
		if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil || body.Error != "unauthenticated" ||
			strings.Join(body.SourcesTried, ",") != "jwt,mtls,header,api_key" {
			t.Errorf("body = %s (%v)", denied.GetBody(), err)
		}
	})
	t.Run("client tier headers are ignored and stripped", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/things", method: "GET",
			headers: map[string]string{"x-user-id": "frank", "x-tier": "enterprise", "x-quota-tier": "enterprise", "x-user-tier": "enterprise"}})
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatalf("resp = %v", resp)
		}
		if md := resp.GetDynamicMetadata().AsMap(); md["tier"] != "freemium" {
			t.Errorf("tier = %v, want freemium", md["tier"])
		}
		if got := strings.Join(ok.GetHeadersToRemove(), ","); got != "x-tier,x-user-tier" {
			t.Errorf("headers_to_remove = %s", got)
		}
		if up := headerMap(ok.GetHeaders()); up["x-quota-tier"] != "freemium" {
			t.Errorf("upstream x-quota-tier = %q (must overwrite the client's)", up["x-quota-tier"])
		}
	})
	t.Run("verified jwt tier claim is used", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/things", method: "GET",
			jwtClaims: map[string]any{"sub": "jules", "tier": "enterprise", "iss": "https://issuer.example.com"}})
		if md := resp.GetDynamicMetadata().AsMap(); resp.GetOkResponse() == nil || md["tier"] != "enterprise" {
			t.Errorf("resp = %v", resp)
		}
	})
	t.Run("api key", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/things", method: "GET", headers: map[string]string{"x-api-key": "secret"}})
		if md := resp.GetDynamicMetadata().AsMap(); resp.GetOkResponse() == nil || md["tier"] != "standard" {
			t.Errorf("resp = %v", resp)
		}
	})
	t.Run("mtls principal", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/things", method: "GET", principal: "spiffe://cluster.local/ns/batch/sa/worker"})
		if resp.GetOkResponse() == nil {
			t.Errorf("resp = %v", resp)
		}
	})
}
