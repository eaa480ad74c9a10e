package extauthz

import (
	"context"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz/pathnorm"
)

var testRoutes = []Route{
	{PathPrefix: "/v1/translate", Method: "POST", Action: "translate"},
	{PathPrefix: "/v1/summarize", Action: "summarize"},
}

func TestUnrouted(t *testing.T) {
	tests := []struct {
		name       string
		unrouted   Unrouted
		path, user string
		wantStatus int
		wantCode   string
		wantAction string
	}{
		{name: "routed, call", unrouted: UnroutedCall, path: "/v1/%74ranslate", user: "sam", wantStatus: 200, wantCode: CodeOK, wantAction: "translate"},
		{name: "unrouted, call", unrouted: UnroutedCall, path: "/V1/translate", user: "sam", wantStatus: 200, wantCode: CodeOK},
		{name: "routed, deny", unrouted: UnroutedDeny, path: "//v1/./translate?x", user: "sam", wantStatus: 200, wantCode: CodeOK, wantAction: "translate"},
		{name: "unrouted, deny", unrouted: UnroutedDeny, path: "/V1/translate", user: "sam", wantStatus: 403, wantCode: CodeNoRoute},
		{name: "unrouted, deny, dot-dot out of a route", unrouted: UnroutedDeny, path: "/v1/translate/../x", user: "sam", wantStatus: 403, wantCode: CodeNoRoute},
		{name: "unrouted, deny, no identity is 401 first", unrouted: UnroutedDeny, path: "/elsewhere", wantStatus: 401, wantCode: CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{now: t0}
			s := newTestServer(t, c, Policy{Routes: testRoutes, Unrouted: tt.unrouted})
			in := userInput(tt.user, "x", "one two three")
			in.Path, in.ContextExtensions = tt.path, nil
			v := s.Decide(context.Background(), in)
			if v.Status != tt.wantStatus || v.Code != tt.wantCode || v.Decision.Action != tt.wantAction {
				t.Fatalf("Decide(%q) = %d %s action %q, want %d %s action %q; body %s", tt.path, v.Status, v.Code, v.Decision.Action,
					tt.wantStatus, tt.wantCode, tt.wantAction, v.Body)
			}
			if tt.wantCode != CodeNoRoute {
				return
			}
			if v.Decision.Reason != engine.ReasonNoRoute || v.Metadata.Reason != "no_route" || v.Decision.Subject != tt.user ||
				!strings.Contains(string(v.Body), `"error":"no_route"`) {
				t.Errorf("no_route verdict: reason %v, metadata %+v, subject %q, body %s", v.Decision.Reason, v.Metadata, v.Decision.Subject, v.Body)
			}
			// A refusal charges nothing: the hour is still whole.
			in.Path = "/v1/translate"
			if v := s.Decide(context.Background(), in); !v.Allowed || v.Decision.Binding.Used != 1 {
				t.Errorf("after a no_route refusal, a routed call = %d, hour used %d; want 200 and 1", v.Status, v.Decision.Binding.Used)
			}
		})
	}
}

// spell returns another spelling of the normalized path p that Envoy's
// normalization (and pathnorm.Path) maps back to p, choosing among
// rewrites with the bytes of ops.
func spell(p string, ops []byte) string {
	var b strings.Builder
	op := func(i int) byte {
		if len(ops) == 0 {
			return 0
		}
		return ops[i%len(ops)]
	}
	for i := 0; i < len(p); i++ {
		c, o := p[i], op(i)
		switch {
		case c == '/':
			b.WriteString([]string{"/", "//", "/./", "%2F", "%2f", "%5C", "\\", "/zz/../", "/%2e/", "/z/%2E%2e/", "///./"}[o%11])
		case c == '%':
			// An escape p kept: keep it, or lower its hex case.
			if o%2 == 1 {
				b.WriteString(strings.ToLower(p[i : i+3]))
			} else {
				b.WriteString(p[i : i+3])
			}
			i += 2
		case isUnreservedByte(c) && o%3 == 1:
			b.WriteString("%" + strings.ToUpper(hex2(c)))
		case isUnreservedByte(c) && o%3 == 2:
			b.WriteString("%" + hex2(c))
		default:
			b.WriteByte(c)
		}
	}
	switch op(len(p)) % 3 {
	case 1:
		b.WriteString("?x=/../y&action=summarize")
	case 2:
		b.WriteString("#/../frag")
	}
	return b.String()
}

func isUnreservedByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// FuzzRouteSpellings checks that path normalization is idempotent and that
// every spelling of a path that Envoy would normalize to the same path gets
// the same route, action and price: no encoding, slash, dot segment, escaped
// slash or query makes a priced endpoint cheaper.
func FuzzRouteSpellings(f *testing.F) {
	f.Add(uint8(0), "", []byte{1, 2, 3}, "hello world")
	f.Add(uint8(0), "batch", []byte{4, 5, 6, 7}, strings.Repeat("bonjour ", 3000))
	f.Add(uint8(1), "x/../y", []byte{8, 9, 10}, "a b c")
	f.Add(uint8(1), "%73%2e;x=1", []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "résumé 翻訳")
	f.Add(uint8(2), "..", []byte{2}, "")
	f.Add(uint8(0), "\x00ü%zz", []byte{1}, "x")
	c := &clock{now: t0}
	eng, err := engine.New(fuzzEngineRules(), engine.Options{Now: c.Now})
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewServer(eng, Options{Now: c.Now}, Policy{Routes: testRoutes,
		Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}})
	if err != nil {
		f.Fatal(err)
	}
	prefixes := []string{"/v1/translate", "/v1/summarize", "/v2/other"}
	f.Fuzz(func(t *testing.T, pick uint8, suffix string, ops []byte, body string) {
		if n := pathnorm.Path(suffix); pathnorm.Path(n) != n {
			t.Fatalf("Path is not idempotent on %q", suffix)
		}
		canonical := pathnorm.Path(prefixes[int(pick)%len(prefixes)] + "/" + suffix)
		spelling := spell(canonical, ops)
		if got := pathnorm.Path(spelling); got != canonical {
			t.Fatalf("Path(%q) = %q, want %q", spelling, got, canonical)
		}
		decide := func(path string) Verdict {
			in := Input{Method: "POST", Path: path, Body: body, ContentLength: int64(len(body)),
				Headers: map[string]string{"x-user-id": "fuzz"}}
			return s.Decide(context.Background(), in)
		}
		a, b := decide(canonical), decide(spelling)
		if !a.Allowed || !b.Allowed {
			t.Fatalf("refused: %q = %d %s, %q = %d %s", canonical, a.Status, a.Body, spelling, b.Status, b.Body)
		}
		if a.Decision.Action != b.Decision.Action || a.Decision.Cost != b.Decision.Cost {
			t.Fatalf("%q is %q costing %d, but its spelling %q is %q costing %d",
				canonical, a.Decision.Action, a.Decision.Cost, spelling, b.Decision.Action, b.Decision.Cost)
		}
	})
}

// fuzzEngineRules has one unlimited caller, so that no window or balance
// refuses however long the fuzzer runs.
func fuzzEngineRules() engine.Rules {
	cfg := testEngineRules()
	cfg.Tiers["unlimited"] = engine.TierConfig{Limits: hourly(engine.MaxQuantity), Tokens: engine.TokenGrant{Unlimited: true}}
	cfg.Users["fuzz"] = engine.UserConfig{Tier: "unlimited"}
	return cfg
}
