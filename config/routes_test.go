package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/extauthz"
)

func TestRoutesForms(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n  actions: {translate: {tokens_per_1000_units: 5}}\n"
	tests := []struct {
		name        string
		in          string
		wantDefault string
		wantRules   []Route
	}{
		{name: "no routes", in: tiers, wantDefault: "call"},
		{name: "the list form", in: tiers + "routes:\n  - {path_prefix: /v1/translate, action: translate}\n",
			wantDefault: "call", wantRules: []Route{{PathPrefix: "/v1/translate", Action: "translate"}}},
		{name: "the mapping form", in: tiers + "routes:\n  default: deny\n  rules:\n    - {path_prefix: /v1/translate, method: POST, action: translate}\n",
			wantDefault: "deny", wantRules: []Route{{PathPrefix: "/v1/translate", Method: "POST", Action: "translate"}}},
		{name: "the mapping form without rules", in: tiers + "routes: {default: deny}\n", wantDefault: "deny"},
		{name: "JSON list", in: `{"quota_manager":{"tiers":{"free":{"api_calls_per_hour":10}}},"routes":[{"path_prefix":"/a","action":"x"}]}`,
			wantDefault: "call", wantRules: []Route{{PathPrefix: "/a", Action: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if f.Routes.Default != tt.wantDefault || !slices.Equal(f.Routes.Rules, tt.wantRules) {
				t.Errorf("routes = %q %+v, want %q %+v", f.Routes.Default, f.Routes.Rules, tt.wantDefault, tt.wantRules)
			}
		})
	}
}

func TestBadRoutes(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n  actions: {translate: {tokens_per_1000_units: 5}}\n"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "unknown default", in: tiers + "routes: {default: free}\n",
			want: []string{`routes.default: must be call (price a request that matches no route as a plain API call) or deny (refuse it with 403 no_route), got "free"`}},
		{name: "unknown key", in: tiers + "routes: {defualt: deny}\n",
			want: []string{"routes.defualt: unknown field; did you mean default?"}},
		{name: "not a list nor a mapping", in: tiers + "routes: deny\n",
			want: []string{`routes: want a mapping with the keys default, rules, got "deny"`}},
		{name: "prefix without a slash", in: tiers + "routes:\n  - {path_prefix: v1/translate, action: translate}\n",
			want: []string{`routes[0].path_prefix: must start with /, got "v1/translate"`}},
		// Whether a prefix is normalized is checked by the wiring
		// (cmd/quotagate checkRoutes), where paths are matched.
		{name: "unnormalized prefix is the wiring's to check", in: tiers + "routes:\n  - {path_prefix: /v1//translate, action: translate}\n"},
		{name: "duplicate in the mapping form", in: tiers + "routes:\n  rules:\n    - {path_prefix: /a, action: translate}\n    - {path_prefix: /a, action: translate}\n",
			want: []string{"routes.rules[1]: has the same path_prefix and method as routes.rules[0]; remove one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Parse() = %v, want nil", err)
				}
				return
			}
			wantProblems(t, err, tt.want)
		})
	}
}

func TestMaxReceiveBytes(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n"
	f, err := Parse([]byte(tiers))
	if err != nil {
		t.Fatal(err)
	}
	if f.Server.MaxReceiveBytes != extauthz.DefaultMaxReceiveBytes {
		t.Errorf("server.max_receive_bytes defaults to %d, want extauthz's %d", f.Server.MaxReceiveBytes, extauthz.DefaultMaxReceiveBytes)
	}
	for _, bad := range []string{"0", "1000", "-1", "2147483648"} {
		_, err := Parse([]byte(tiers + "server: {max_receive_bytes: " + bad + "}\n"))
		if err == nil || !strings.Contains(err.Error(), "server.max_receive_bytes: must be from 1048576 (1 MiB) to 1073741824 (1 GiB)") ||
			!strings.Contains(err.Error(), "got "+bad) {
			t.Errorf("max_receive_bytes %s: %v", bad, err)
		}
	}
}
