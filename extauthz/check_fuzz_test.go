package extauthz

import (
	"context"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
)

// fuzzUsers are the callers a fuzz input picks from: the embedded default
// config's demo users (a free, a standard, an enterprise and two team
// members), an unknown caller and none.
var fuzzUsers = []string{"demo-free", "demo-standard", "demo-enterprise", "demo-team-a", "demo-team-b", "stranger", ""}

// fuzzActions are the actions a fuzz input picks from: the default
// config's priced ones, an unpriced one, and none (the routes decide).
var fuzzActions = []string{"translate", "summarize", "nightly-report", "transl8", ""}

// extremeYAML is a configuration whose limits, prices, grants and credits
// sit at MaxQuantity, so that any body within max_body_bytes can make a
// price overflow int64 unless it is checked.
const extremeYAML = `
quota_manager:
  tiers:
    free:
      api_calls_per_hour: 9007199254740991
      limits:
        - {name: words, max: 20000, per: day, unit: units, actions: [translate]}
        - {name: toks, max: 9007199254740991, per: hour, unit: tokens, window: sliding}
      tokens: {grant: 9007199254740991, every: month}
    rich:
      priority: high
      limits: [{name: words, max: 9007199254740991, per: minute, unit: units}]
      tokens: {grant: 1000, every: day}
  default_tier: free
  actions:
    translate: {tokens_per_1000_units: 9007199254740991}
    summarize: {tokens_per_call: 9007199254740991, tokens_per_1000_units: 1}
    nightly-report: {tokens_per_1000_units: 1000}
  users:
    demo-free: {tier: free, credits: 9007199254740991}
    demo-standard: {tier: rich, credits: 5}
    demo-enterprise: {tier: rich}
    demo-team-a: {tier: free}
    demo-team-b: {tier: rich}
  teams:
    demo-team:
      members: [demo-team-a, demo-team-b]
      tokens: {grant: 9007199254740991, every: day}
      credits: 9007199254740991
      limits: [{name: team-words, max: 1000000, per: hour, unit: units}]
identity: {sources: [header], header: {name: x-user-id, trusted: true}}
routes:
  - {path_prefix: /v1/translate, method: POST, action: translate}
pricing: {partial_body_words_per_byte: 0.5}
`

// parsedConfig is a configuration parsed once: engine.Rules are not
// changed by New, so each fuzz input builds its own engine from it.
type parsedConfig struct {
	once sync.Once
	file *config.File
	cfg  engine.Rules
	err  error
}

var parsedDefault, parsedExtreme parsedConfig

func (p *parsedConfig) load(t testing.TB, data []byte) (*config.File, engine.Rules) {
	t.Helper()
	p.once.Do(func() {
		p.file, p.err = config.Parse(data)
		if p.err == nil {
			p.cfg, p.err = p.file.Engine()
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.file, p.cfg
}

// defaultConfigServer builds a Server on the embedded default
// configuration, as serve wires it, with the clock at now.
func defaultConfigServer(t testing.TB, now time.Time) (*Server, *engine.Engine, *config.File) {
	t.Helper()
	file, cfg := parsedDefault.load(t, config.Default())
	return configServer(t, now, file, cfg)
}

// configServer builds a Server on file (whose engine configuration is
// cfg), as serve wires it, with the clock at now.
func configServer(t testing.TB, now time.Time, file *config.File, cfg engine.Rules) (*Server, *engine.Engine, *config.File) {
	t.Helper()
	eng, err := engine.New(cfg, engine.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	routes := make([]Route, len(file.Routes.Rules))
	for i, r := range file.Routes.Rules {
		routes[i] = Route{PathPrefix: r.PathPrefix, Method: r.Method, Action: r.Action, Workflow: r.Workflow}
	}
	s, err := NewServer(eng, Options{Now: func() time.Time { return now }}, Policy{
		Identity:     IdentityOptions{Sources: []Source{SourceHeader, SourceAPIKey}, Header: "x-user-id", HeaderTrusted: true, APIKeyHeader: "x-api-key", APIKeys: file.APIKeys()},
		Routes:       routes,
		Unrouted:     must(ParseUnrouted(file.Routes.Default)),
		StripHeaders: file.Identity.StripHeaders,
		WordsPerByte: file.Pricing.PartialBodyWordsPerByte,
		MaxBodyBytes: file.Pricing.MaxBodyBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, eng, file
}

// FuzzCheck sends arbitrary requests through the whole Check path
// (CheckRequest → Server.Check → the engine on the embedded default
// configuration, or on extremeYAML) and checks every answer: no panic and no transport
// error; an HTTP status and a decision in the dynamic metadata; a cost
// that is never negative and never below the price of the words seen; and
// windows and balances that an admission moves by what it counts and a
// refusal leaves alone.
func FuzzCheck(f *testing.F) {
	type seed struct {
		body, contentLength string
		partial, raw        bool
		user, action        uint8
		path, query         string
		repeat              uint16
	}
	seeds := []seed{
		{body: "one two three", contentLength: "13", user: 1, action: 0, path: "/v1/translate"},
		// The overflow: a partial body claiming MaxInt64 bytes.
		{body: "word word word", contentLength: "9223372036854775807", partial: true, user: 1, action: 0, path: "/v1/translate"},
		{body: "word word word", contentLength: "9223372036854775807", partial: true, user: 1, action: 4, path: "/v1/summarize"},
		{body: "x", contentLength: "4611686018427387904", partial: true, user: 0, action: 0},
		// A 5 MB body cut to 64 KiB.
		{body: "lorem ipsum dolor sit amet ", contentLength: "5000000", partial: true, user: 1, action: 0, repeat: 2427},
		// 700 000 words against freemium's 20 000-word window.
		{body: "a ", contentLength: "1400000", partial: true, user: 0, action: 0, repeat: 1000},
		{body: "word ", contentLength: "", partial: true, user: 1, action: 0},
		{body: "word ", contentLength: "-1", partial: true, user: 1, action: 0},
		{body: "word ", contentLength: "+12", partial: true, user: 1, action: 0},
		{body: "word ", contentLength: "0x7fffffffffffffff", partial: true, user: 1, action: 0},
		{body: "word ", contentLength: "67108865", partial: true, user: 2, action: 0},
		{body: "word ", contentLength: "67108864", partial: true, user: 2, action: 0},
		{body: "翻訳してください。日本語の文章", contentLength: "300000", partial: true, user: 3, action: 0},
		{body: "翻訳\xe3\x81", contentLength: "100", partial: true, raw: true, user: 4, action: 0},
		{body: "\xff\xfe\xfd binary", contentLength: "20", user: 1, action: 1, raw: true},
		{body: "no identity", contentLength: "11", user: 6, action: 0},
		{body: "unknown caller", contentLength: "14", user: 5, action: 1},
		{body: "typo", contentLength: "4", user: 2, action: 3},
		{body: "routes decide", contentLength: "13", user: 1, action: 4, path: "/v1/translate", query: "?x=1"},
		{body: "routed", contentLength: "6", user: 1, action: 4, path: "/v1/%74ranslate"},
		{body: "a b c d e f g h", contentLength: "1000000000", partial: true, user: 2, action: 1},
		// The same on extremeYAML (user >= 128), where prices overflow.
		{body: "word word word", contentLength: "9223372036854775807", partial: true, user: 128 + 1, action: 0},
		{body: "one two three", contentLength: "13", user: 128 + 1, action: 0},
		{body: "a ", contentLength: "67108864", partial: true, user: 128 + 2, action: 1},
		{body: "a ", contentLength: "50000000", partial: true, user: 128 + 3, action: 2},
		{body: "a b c", contentLength: "5", user: 128 + 0, action: 1},
		{body: "a b c d", contentLength: "1000", partial: true, user: 128 + 4, action: 2},
	}
	for _, s := range seeds {
		f.Add(s.body, s.contentLength, s.partial, s.raw, s.user, s.action, s.path, s.query, s.repeat)
	}
	t0 := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body, contentLength string, partial, raw bool, user, action uint8, path, query string, repeat uint16) {
		if repeat > 1 && len(body)*int(repeat) <= 1<<17 {
			body = strings.Repeat(body, int(repeat))
		}
		var s *Server
		var eng *engine.Engine
		var file *config.File
		if user >= 128 {
			f, cfg := parsedExtreme.load(t, []byte(extremeYAML))
			s, eng, file = configServer(t, t0, f, cfg)
		} else {
			s, eng, file = defaultConfigServer(t, t0)
		}
		subject := fuzzUsers[int(user)%len(fuzzUsers)]
		act := fuzzActions[int(action)%len(fuzzActions)]
		headers := map[string]string{"content-length": contentLength}
		if partial {
			headers[headerPartialBody] = "true"
		}
		if subject != "" {
			headers["x-user-id"] = subject
		}
		ext := map[string]string{}
		if act != "" {
			ext["action"] = act
		}
		req := envoyCheck(body, headers, ext, nil)
		h := req.Attributes.Request.Http
		h.Path = path + query
		if raw {
			h.Body, h.RawBody = "", []byte(body)
		}
		ctx := context.Background()
		var before engine.SubjectStatus
		if subject != "" {
			before = statusOf(t, eng, t0, subject)
		}
		resp, err := wireCheck(s, ctx, req)
		if err != nil {
			t.Fatalf("Check returned a transport error: %v", err)
		}
		md := resp.GetDynamicMetadata().AsMap()
		decision, _ := md["decision"].(string)
		reason, _ := md["reason"].(string)
		cost, _ := md["cost"].(float64)
		code := codes.Code(resp.GetStatus().GetCode())
		switch {
		case decision == "allow" && code != codes.OK, decision == "deny" && (code == codes.OK || resp.GetDeniedResponse() == nil):
			t.Fatalf("decision %q with status %v: %v", decision, code, resp)
		case decision != "allow" && decision != "deny":
			t.Fatalf("no decision in the metadata: %v", md)
		case cost < 0 || cost > float64(engine.MaxQuantity):
			t.Fatalf("cost %g out of range", cost)
		}
		if subject == "" {
			if reason != engine.ReasonNoIdentity.String() || md["tier"] != nil {
				t.Fatalf("no identity: reason %q, tier %v", reason, md["tier"])
			}
			return
		}
		after := statusOf(t, eng, t0, subject)
		// Whatever was charged is at least the price of the words seen.
		if decision == "allow" || reason == engine.ReasonWindowExceeded.String() || reason == engine.ReasonInsufficientBalance.String() {
			seen := body
			if partial {
				seen = trimPartialRune(body)
			}
			a := file.QuotaManager.Actions[actionOf(s, req)]
			floor := new(big.Int).Mul(big.NewInt(CountWords(seen)), big.NewInt(a.TokensPer1000Units))
			floor.Add(floor, big.NewInt(999)).Quo(floor, big.NewInt(1000)).Add(floor, big.NewInt(a.TokensPerCall))
			if big.NewFloat(cost).Cmp(new(big.Float).SetInt(floor)) < 0 {
				t.Fatalf("cost %g below the price %s of the %d words seen", cost, floor, CountWords(seen))
			}
		}
		if reason == engine.ReasonRequestTooLarge.String() {
			if resp.GetDeniedResponse().GetStatus().GetCode() != 413 {
				t.Fatalf("request_too_large answered %v", resp.GetDeniedResponse().GetStatus())
			}
			for _, hv := range resp.GetDeniedResponse().GetHeaders() {
				if strings.EqualFold(hv.GetHeader().GetKey(), HeaderRetryAfter) {
					t.Fatalf("request_too_large with Retry-After %s", hv.GetHeader().GetValue())
				}
			}
		}
		checkMoves(t, before, after, decision == "allow", int64(cost))
	})
}

// wireCheck calls s.Check with req as it arrives off the wire (encoded and
// decoded, so invalid UTF-8 in a string field is what a client could
// send only as bytes) and returns the response as the proxy decodes it.
func wireCheck(s *Server, ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, err := s.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	var out authv3.CheckResponse
	return &out, proto.Unmarshal(b, &out)
}

// actionOf is the action the server priced req as.
func actionOf(s *Server, req *authv3.CheckRequest) string {
	p := s.pol.Load()
	in := inputFromCheck(&p.Identity, req)
	a, _, _ := p.route(&in)
	return a
}

func statusOf(t *testing.T, eng *engine.Engine, now time.Time, key string) engine.SubjectStatus {
	t.Helper()
	st, err := eng.StatusAt(context.Background(), now, key)
	if err != nil {
		t.Fatalf("StatusAt(%q): %v", key, err)
	}
	return st
}

// checkMoves checks that an admission moved no window down and the
// balance down by exactly cost (or not at all, for an unlimited tier),
// and that a refusal moved nothing.
func checkMoves(t *testing.T, before, after engine.SubjectStatus, allowed bool, cost int64) {
	t.Helper()
	used := make(map[string]int64, len(before.Limits))
	for _, l := range before.Limits {
		used[l.Name] = l.Used
	}
	for _, l := range after.Limits {
		d := l.Used - used[l.Name]
		if d < 0 || (!allowed && d != 0) || l.Used > l.Limit || l.Used < 0 {
			t.Fatalf("limit %q moved from %d to %d of %d (allowed %v)", l.Name, used[l.Name], l.Used, l.Limit, allowed)
		}
	}
	spent := before.Balance - after.Balance
	switch {
	case after.Balance < 0 || spent < 0:
		t.Fatalf("balance moved from %d to %d", before.Balance, after.Balance)
	case !allowed && spent != 0:
		t.Fatalf("a refusal spent %d", spent)
	case allowed && before.HasBalance && spent != cost && spent != 0:
		t.Fatalf("an admission at cost %d spent %d", cost, spent)
	case allowed && spent == 0 && cost > 0 && before.Balance != math.MaxInt64 && !unlimited(before):
		t.Fatalf("an admission at cost %d spent nothing of %d", cost, before.Balance)
	}
}

// unlimited reports whether st's tier never runs out of tokens: the
// default config's enterprise tier.
func unlimited(st engine.SubjectStatus) bool { return st.Tier == "enterprise" }

func TestFuzzCheckSeedsDecide(t *testing.T) {
	// The seeds' headline cases, decided as the issue asks.
	t0 := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	s, _, _ := defaultConfigServer(t, t0)
	tests := []struct {
		name       string
		headers    map[string]string
		body       string
		wantStatus int
		wantReason string
	}{
		{name: "MaxInt64 content-length", headers: map[string]string{"x-user-id": "demo-standard", "content-length": strconv.FormatInt(math.MaxInt64, 10), headerPartialBody: "true"},
			body: "a b c", wantStatus: 413, wantReason: "request_too_large"},
		{name: "700 000 words for freemium", headers: map[string]string{"x-user-id": "demo-free", "content-length": "1400000", headerPartialBody: "true"},
			body: "a b c", wantStatus: 413, wantReason: "request_too_large"},
		{name: "5 MB body cut to 64 KiB", headers: map[string]string{"x-user-id": "demo-enterprise", "content-length": "5000000", headerPartialBody: "true"},
			body: strings.Repeat("lorem ipsum dolor sit amet ", 2427), wantStatus: 200, wantReason: "ok"},
		{name: "no identity comes before the body's size", headers: map[string]string{"content-length": strconv.FormatInt(math.MaxInt64, 10), headerPartialBody: "true"},
			body: "a b c", wantStatus: 401, wantReason: "no_identity"},
		{name: "no identity comes before a missing length", headers: map[string]string{headerPartialBody: "true"},
			body: "a b c", wantStatus: 401, wantReason: "no_identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := wireCheck(s, context.Background(), envoyCheck(tt.body, tt.headers, map[string]string{"action": "translate"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			md := resp.GetDynamicMetadata().AsMap()
			status := 200
			if d := resp.GetDeniedResponse(); d != nil {
				status = int(d.GetStatus().GetCode())
			}
			if status != tt.wantStatus || md["reason"] != tt.wantReason {
				t.Fatalf("status %d reason %v, want %d %s: %v", status, md["reason"], tt.wantStatus, tt.wantReason, resp)
			}
		})
	}
}

// must returns v, panicking on err: for values a test's fixed input makes
// valid.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
