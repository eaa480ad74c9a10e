package config

import (
	_ "embed"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

// seedJSON is the seed's "Example JSON Configuration", byte for byte.
//
//go:embed testdata/seed.json
var seedJSON []byte

// seedYAML is the same configuration written as YAML.
const seedYAML = `
quota_manager:
  tiers:
    freemium: {api_calls_per_hour: 10, priority: low}
    standard: {api_calls_per_hour: 100, priority: medium}
    enterprise: {api_calls_per_hour: 500, priority: high}
  alerts:
    enabled: true
    threshold_percentage: 90
    channels: [email, dashboard]
`

func TestSeedLoadsUnchanged(t *testing.T) {
	f, err := Parse(seedJSON)
	if err != nil {
		t.Fatalf("Parse(seed) = %v", err)
	}
	cfg, err := f.Engine()
	if err != nil {
		t.Fatalf("Engine() = %v", err)
	}
	hour, _ := engine.ParsePeriod("hour")
	tests := []struct {
		name     string
		tier     engine.Tier
		perHour  int64
		priority engine.Priority
	}{
		{name: "freemium", tier: "freemium", perHour: 10, priority: engine.PriorityLow},
		{name: "standard", tier: "standard", perHour: 100, priority: engine.PriorityMedium},
		{name: "enterprise", tier: "enterprise", perHour: 500, priority: engine.PriorityHigh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, ok := cfg.Tiers[tt.tier]
			if !ok {
				t.Fatalf("tier %q missing from %v", tt.tier, cfg.Tiers)
			}
			want := []engine.LimitConfig{{Name: "hour", Period: hour, Max: tt.perHour}}
			if !reflect.DeepEqual(tc.Limits, want) {
				t.Errorf("limits = %+v, want %+v", tc.Limits, want)
			}
			if tc.Priority != tt.priority {
				t.Errorf("priority = %v, want %v", tc.Priority, tt.priority)
			}
			if tc.Features != nil {
				t.Errorf("features = %v, want nil (all)", tc.Features)
			}
		})
	}
	if len(cfg.Tiers) != 3 {
		t.Errorf("got %d tiers, want 3", len(cfg.Tiers))
	}
	if cfg.Alerts.ThresholdPercent != 90 {
		t.Errorf("ThresholdPercent = %d, want 90", cfg.Alerts.ThresholdPercent)
	}
	a := f.QuotaManager.Alerts
	if !a.Enabled || a.ThresholdPercentage != 90 || !slices.Equal(a.Channels, []string{"email", "dashboard"}) {
		t.Errorf("alerts = %+v, want enabled at 90%% to [email dashboard]", a)
	}
}

func TestYAMLAndJSONDecodeAlike(t *testing.T) {
	fromJSON, err := Parse(seedJSON)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := Parse([]byte(seedYAML))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("JSON and YAML differ:\n json %+v\n yaml %+v", fromJSON, fromYAML)
	}
}

func TestDefaultConfig(t *testing.T) {
	f, err := Parse(Default())
	if err != nil {
		t.Fatalf("the embedded default.yaml does not load: %v", err)
	}
	cfg, err := f.Engine()
	if err != nil {
		t.Fatal(err)
	}
	for tier, perHour := range map[engine.Tier]int64{"freemium": 10, "standard": 100, "enterprise": 500} {
		if got := cfg.Tiers[tier].Limits[0]; got.Name != "hour" || got.Max != perHour {
			t.Errorf("%s first limit = %+v, want hour %d", tier, got, perHour)
		}
	}
	if slices.Contains(cfg.Tiers["freemium"].Features, "summarize") {
		t.Error("freemium includes summarize; the default keeps it to premium tiers")
	}
	want := map[string]engine.ActionConfig{
		"translate": {PerThousand: 5, Unit: "words"},
		"summarize": {PerThousand: 2, Unit: "words"},
	}
	if !reflect.DeepEqual(cfg.Actions, want) {
		t.Errorf("actions = %+v, want %+v", cfg.Actions, want)
	}
	if h := f.Identity.Header; h.Name != "x-user-id" || !h.Trusted {
		t.Errorf("identity.header = %+v, want trusted x-user-id", h)
	}
	if len(f.Routes.Rules) != 2 || f.Routes.Rules[0].Action != "translate" || f.Routes.Rules[1].Action != "summarize" {
		t.Errorf("routes = %+v", f.Routes)
	}
	if got := f.APIKeys()["c763c81266ea5e92e63b46f72bf4ef909ec5d2593ebf1f64f8b6aced74855792"]; got != "demo-standard" {
		t.Errorf("APIKeys() maps the demo key to %q, want demo-standard", got)
	}
}

func TestDefaultsApplied(t *testing.T) {
	f, err := Parse(seedJSON)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Identity.Sources, []string{"jwt", "mtls", "api_key"}; !slices.Equal(got, want) {
		t.Errorf("sources = %v, want %v (header only when trusted)", got, want)
	}
	if f.Server.GRPCAddr != ":9191" || f.Server.Keepalive.Time.D().String() != "30s" || f.Server.InsufficientBalanceStatus != 402 {
		t.Errorf("server defaults = %+v", f.Server)
	}
	if f.Tracing.SampleAllowed != 0.01 || f.Tracing.SampleRejected != 1 {
		t.Errorf("tracing defaults = %+v", f.Tracing)
	}
	// An explicit zero stays zero instead of taking the default.
	f, err = Parse([]byte(seedYAML + "tracing: {sample_allowed: 0}\nidentity: {strip_headers: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Tracing.SampleAllowed != 0 || f.Tracing.SampleRejected != 1 || len(f.Identity.StripHeaders) != 0 {
		t.Errorf("explicit zeros: tracing %+v, strip_headers %v", f.Tracing, f.Identity.StripHeaders)
	}
}

func TestBadConfigs(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name string
		in   string
		want []string // every problem, in order
	}{
		{
			name: "negative shorthand",
			in:   "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: -5, priority: low}\n",
			want: []string{"quota_manager.tiers.freemium.api_calls_per_hour: must be > 0, got -5"},
		},
		{
			name: "misspelt field",
			in:   "quota_manager:\n  tiers:\n    freemium: {api_calls_per_huor: 10}\n",
			want: []string{"quota_manager.tiers.freemium.api_calls_per_huor: unknown field; did you mean api_calls_per_hour?"},
		},
		{
			name: "bad upgrade url",
			in:   "quota_manager:\n  tiers:\n    freemium: {upgrade_url: example.com/up}\n",
			want: []string{`quota_manager.tiers.freemium.upgrade_url: want an absolute http or https URL, got "example.com/up"`},
		},
		{
			name: "unknown field and bad value reported together",
			in:   "quota_manager:\n  tiers:\n    freemium: {api_calls_per_huor: 10, priority: urgent}\n",
			want: []string{
				"quota_manager.tiers.freemium.api_calls_per_huor: unknown field; did you mean api_calls_per_hour?",
				`quota_manager.tiers.freemium.priority: unknown priority "urgent": want one of low, medium, high, critical`,
			},
		},
		{
			name: "periods the engine cannot count",
			in: "quota_manager:\n  tiers:\n    freemium:\n      tokens: {grant: 5, every: 10ms}\n      limits:\n" +
				"        - {name: a, max: 5, per: 1ns}\n        - {name: b, max: 5, per: 1500ms}\n        - {name: c, max: 5, per: 90000h}\n",
			want: []string{
				"quota_manager.tiers.freemium.tokens.every: must be at least 1s, got 10ms: windows count in whole seconds",
				"quota_manager.tiers.freemium.limits[0].per: must be at least 1s, got 1ns: windows count in whole seconds",
				"quota_manager.tiers.freemium.limits[1].per: must be a whole number of seconds, got 1.5s",
				"quota_manager.tiers.freemium.limits[2].per: period \"90000h\" is longer than 87840h0m0s (10 years), the longest window quotagate keeps",
			},
		},
		{
			name: "unknown top-level field",
			in:   tiers + "zzz: 1\n",
			want: []string{"zzz: unknown field; want one of quota_manager, identity, routes, pricing, server, tracing, store, ledger, admin, require_encryption"},
		},
		{
			name: "wrong types",
			in:   "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: ten, max_delay: 2, features: translate, limits: [{max: 1.5, per: day}]}\n",
			want: []string{
				`quota_manager.tiers.freemium.api_calls_per_hour: want a whole number, got "ten"`,
				`quota_manager.tiers.freemium.features: want a list, got "translate"`,
				`quota_manager.tiers.freemium.limits[0].max: want a whole number, got 1.5`,
				`quota_manager.tiers.freemium.max_delay: want a duration such as 2s or 1m30s, got 2`,
			},
		},
		{
			name: "bad duration",
			in:   "quota_manager:\n  tiers:\n    freemium: {max_delay: 2 seconds}\n",
			want: []string{`quota_manager.tiers.freemium.max_delay: invalid duration "2 seconds": want a Go duration such as 2s or 1m30s`},
		},
		{
			name: "duplicate key in JSON",
			in:   `{"quota_manager": {"tiers": {"a": {"priority": "low", "priority": "high"}}}}`,
			want: []string{"quota_manager.tiers.a.priority: duplicate key; keep only one"},
		},
		{
			name: "unknown priority and failure mode",
			in:   "quota_manager:\n  tiers:\n    freemium: {priority: urgent, failure_mode: maybe}\n",
			want: []string{
				`quota_manager.tiers.freemium.priority: unknown priority "urgent": want one of low, medium, high, critical`,
				`quota_manager.tiers.freemium.failure_mode: unknown failure mode "maybe": want open or closed`,
			},
		},
		{
			name: "unknown tiers",
			in:   tiers + "  default_tier: freemum\n  users:\n    bob: {tier: gold}\n",
			want: []string{
				`quota_manager.default_tier: unknown tier "freemum"; did you mean freemium?`,
				`quota_manager.users.bob.tier: unknown tier "gold"; want one of freemium`,
			},
		},
		{
			name: "bad limits",
			in: tiers + "    pro:\n      limits:\n" +
				"        - {max: 0, per: fortnight, unit: bytes, window: rolling}\n" +
				"        - {name: hour, max: 5}\n",
			want: []string{
				"quota_manager.tiers.pro.limits[0].max: must be > 0, got 0",
				`quota_manager.tiers.pro.limits[0].per: unknown period "fortnight": want minute, hour, day, week, month or a duration such as 15m`,
				`quota_manager.tiers.pro.limits[0].unit: unknown unit "bytes": want calls, units or tokens`,
				`quota_manager.tiers.pro.limits[0].window: unknown window mode "rolling": want fixed or sliding`,
				"quota_manager.tiers.pro.limits[1].per: missing; want minute, hour, day, week, month or a duration such as 15m",
			},
		},
		{
			name: "limit name taken by shorthand",
			in:   "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, limits: [{name: hour, max: 5, per: hour}]}\n",
			want: []string{`quota_manager.tiers.freemium.limits[0].name: "hour" is already used by another limit here; limits with one name would share a counter, so rename one`},
		},
		{
			name: "timezone window and unknown_subjects",
			in:   tiers + "  timezone: Mars/Olympus\n  window: rolling\n  unknown_subjects: reject\n",
			want: []string{
				`quota_manager.timezone: unknown time zone "Mars/Olympus": want an IANA name such as UTC or Europe/Paris`,
				`quota_manager.window: unknown window mode "rolling": want fixed or sliding`,
				`quota_manager.unknown_subjects: must be default or deny, got "reject"`,
			},
		},
		{
			name: "threshold out of range",
			in:   tiers + "  alerts: {enabled: true, threshold_percentage: 0, channels: [email, sms]}\n",
			want: []string{
				"quota_manager.alerts.threshold_percentage: must be from 1 to 100, got 0",
				`quota_manager.alerts.channels[1]: unknown channel "sms"; want one of dashboard, email, webhook`,
			},
		},
		{
			name: "feature naming nothing",
			in:   tiers + "    pro: {features: [summarise]}\n  actions:\n    summarize: {tokens_per_1000_units: 2}\n",
			want: []string{`quota_manager.tiers.pro.features[0]: unknown action or workflow "summarise"; did you mean summarize?`},
		},
		{
			name: "negative costs and tokens",
			in: tiers + "    pro: {tokens: {grant: -1}}\n    max: {tokens: {grant: 10}}\n" +
				"  actions:\n    translate: {tokens_per_1000_units: -5, tokens_per_call: -1}\n",
			want: []string{
				"quota_manager.tiers.max.tokens.every: missing; say how often the grant of 10 refills: day, week, month or a duration such as 24h",
				"quota_manager.tiers.pro.tokens.grant: must be >= 0, got -1",
				"quota_manager.actions.translate.tokens_per_1000_units: must be >= 0, got -5",
				"quota_manager.actions.translate.tokens_per_call: must be >= 0, got -1",
			},
		},
		{
			name: "teams and users disagree",
			in: tiers + "  users:\n    alice: {team: blue}\n    carol: {team: green, roles: [admin]}\n" +
				"  teams:\n    red: {members: [alice, bob]}\n    blue: {members: [bob]}\n",
			want: []string{
				`quota_manager.teams.red.members[1]: "bob" is already a member of team "blue"; a subject belongs to one team`,
				`quota_manager.users.alice.team: is "blue", but the user is a member of team "red"; make them agree`,
				`quota_manager.users.carol.team: unknown team "green"; define it under quota_manager.teams`,
				`quota_manager.users.carol.roles[0]: unknown role "admin"`,
			},
		},
		{
			name: "duplicate and malformed api key hashes",
			in: tiers + "  users:\n" +
				"    a: {api_key_sha256: C763C81266EA5E92E63B46F72BF4EF909EC5D2593EBF1F64F8B6ACED74855792}\n" +
				"    b: {api_key_sha256: c763c81266ea5e92e63b46f72bf4ef909ec5d2593ebf1f64f8b6aced74855792}\n" +
				"    c: {api_key_sha256: secret}\n",
			want: []string{
				`quota_manager.users.b.api_key_sha256: same key hash as user "a"; give each user its own key`,
				"quota_manager.users.c.api_key_sha256: want 64 hex digits (the SHA-256 of the key, e.g. from `printf %s KEY | sha256sum`), got \"secret\"",
			},
		},
		{
			name: "too many limits",
			in: "quota_manager:\n  tiers:\n    t:\n      api_calls_per_hour: 1\n      limits:\n" +
				strings.Repeat("        - {max: 1, per: day}\n", 16),
			want: []string{"quota_manager.tiers.t: up to 17 limits (tier and workflow) would apply to one request; at most 16 may: remove some"},
		},
		{
			name: "capacity",
			in:   tiers + "  capacity: {requests_per_second: -1, factor: -2, shed_at: {critical: 1, low: 0, urgent: 1}}\n",
			want: []string{
				"quota_manager.capacity.requests_per_second: must be >= 0 (0 disables shedding), got -1",
				"quota_manager.capacity.factor: must be a finite number >= 0 (0 means 1), got -2",
				"quota_manager.capacity.shed_at.critical: critical requests are never shed; remove this key",
				"quota_manager.capacity.shed_at.low: must be > 0 (a fraction of capacity such as 0.8), got 0",
				`quota_manager.capacity.shed_at.urgent: unknown priority "urgent": want one of low, medium, high, critical`,
			},
		},
		{
			name: "quantities above 2^53-1",
			in: "quota_manager:\n  tiers:\n    freemium:\n      api_calls_per_hour: 9007199254740992\n" +
				"      tokens: {grant: 9223372036854775807, every: month}\n" +
				"      limits: [{max: 9007199254740992, per: day, unit: units}]\n" +
				"  actions: {translate: {tokens_per_1000_units: 9007199254740992, tokens_per_call: 9007199254740992}}\n" +
				"  users: {u: {credits: 9007199254740992}}\n" +
				"pricing: {max_body_bytes: 1099511627777}\n",
			want: []string{
				"quota_manager.tiers.freemium.tokens.grant: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9223372036854775807",
				"quota_manager.tiers.freemium.api_calls_per_hour: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9007199254740992",
				"quota_manager.tiers.freemium.limits[0].max: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9007199254740992",
				"quota_manager.actions.translate.tokens_per_1000_units: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9007199254740992",
				"quota_manager.actions.translate.tokens_per_call: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9007199254740992",
				"quota_manager.users.u.credits: must be at most 9007199254740991 (2^53-1, the largest quantity quotagate counts exactly), got 9007199254740992",
				"pricing.max_body_bytes: must be from 1 to 1099511627776 (1 TiB) bytes, or 0 for 64 MiB, got 1099511627777",
			},
		},
		{
			name: "workflow priority and messages",
			in: tiers + "  workflows:\n    nightly: {priority: top}\n" +
				"  messages: {warning: Approaching the limit., feature_not_in_plan: \"%s needs %d\"}\n",
			want: []string{
				`quota_manager.workflows.nightly.priority: unknown priority "top": want one of low, medium, high, critical`,
				`quota_manager.messages.warning: must hold exactly one %s for the period ("daily"), got "Approaching the limit."`,
				`quota_manager.messages.feature_not_in_plan: must hold exactly two %s, the feature then the tier, got "%s needs %d"`,
			},
		},
		{
			name: "identity",
			in: tiers + "identity:\n  sources: [jwt, cookie, jwt, header]\n  jwt: {subject_claim: \"\"}\n" +
				"  header: {name: X-User}\n  strip_headers: [X-Tier]\n",
			want: []string{
				`identity.sources[1]: unknown identity source "cookie"; want one of jwt, mtls, header, api_key`,
				`identity.sources[2]: "jwt" is listed twice; remove one`,
				"identity.jwt.subject_claim: must not be empty while jwt is in identity.sources",
				`identity.header.trusted: is false but header is in identity.sources; set trusted: true only if Envoy sets "X-User" after authenticating the caller, or remove header from the sources`,
				`identity.header.name: must be lower case, as Envoy passes header names, got "X-User"; write "x-user"`,
				`identity.strip_headers[0]: must be lower case, as Envoy passes header names, got "X-Tier"; write "x-tier"`,
			},
		},
		{
			name: "mistyped values and invalid values reported in one pass",
			in: "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: ten, priority: urgent}\n    pro: {api_calls_per_hour: -1, max_delay: 2}\n" +
				"store: {durability: eventually, flush_interval: 0s}\nserver: {grace_period: [1]}\n",
			want: []string{
				`quota_manager.tiers.freemium.api_calls_per_hour: want a whole number, got "ten"`,
				`quota_manager.tiers.pro.max_delay: want a duration such as 2s or 1m30s, got 2`,
				`server.grace_period: want a duration such as 2s or 1m30s, got a list`,
				`quota_manager.tiers.freemium.priority: unknown priority "urgent": want one of low, medium, high, critical`,
				"quota_manager.tiers.pro.api_calls_per_hour: must be > 0, got -1",
				"store.flush_interval: must be > 0, got 0s",
				`store.durability: must be batch or sync (async is accepted as the old name of batch), got "eventually"`,
			},
		},
		{
			name: "trusted header with an empty name",
			in:   tiers + "identity: {header: {name: \"\", trusted: true}}\n",
			want: []string{"identity.header.name: missing; a trusted header needs the name of the header Envoy sets after authentication, e.g. x-user-id"},
		},
		{
			name: "no identity sources",
			in:   tiers + "identity: {sources: []}\n",
			want: []string{"identity.sources: is empty, so every request would be refused for lack of identity; list at least one of jwt, mtls, header, api_key"},
		},
		{
			name: "routes and pricing",
			in: tiers + "routes:\n  - {path_prefix: v1/x, method: post}\n  - {path_prefix: /a, action: a}\n  - {path_prefix: /a, action: b}\n" +
				"pricing: {partial_body_words_per_byte: 2}\n",
			want: []string{
				`routes[0].path_prefix: must start with /, got "v1/x"`,
				`routes[0].method: unknown HTTP method "post"; want an upper-case method such as POST, or leave it empty for every method`,
				"routes[0]: names neither an action nor a workflow; set action, workflow or both",
				"routes[2]: has the same path_prefix and method as routes[1]; remove one",
				"pricing.partial_body_words_per_byte: must be from 0 to 1, got 2",
			},
		},
		{
			name: "server tracing store",
			in: tiers + "server:\n  grpc_addr: localhost\n  tls: {cert_file: c.pem}\n  max_concurrent_streams: 0\n" +
				"  keepalive: {time: 0s, min_time: -1s}\n  insufficient_balance_status: 200\n" +
				"tracing: {sample_allowed: 1.5}\nstore: {kind: etcd, flush_interval: 0s, durability: eventually}\n",
			want: []string{
				`server.grpc_addr: want host:port such as ":9191" or "127.0.0.1:9191", got "localhost"`,
				"server.tls: cert_file and key_file go together; set both or neither",
				"server.max_concurrent_streams: must be > 0, got 0",
				"server.keepalive.time: must be > 0, got 0s",
				"server.keepalive.min_time: must be >= 0, got -1s",
				"server.insufficient_balance_status: must be an HTTP error status from 400 to 599 (402 by default), got 200",
				"tracing.sample_allowed: must be a fraction from 0 to 1, got 1.5",
				`store.kind: unknown store "etcd"; want memory, sqlite or redis`,
				"store.flush_interval: must be > 0, got 0s",
				`store.durability: must be batch or sync (async is accepted as the old name of batch), got "eventually"`,
			},
		},
		{
			name: "negative uint",
			in:   tiers + "server: {max_concurrent_streams: -1}\n",
			want: []string{"server.max_concurrent_streams: want a whole number from 0 to 4294967295, got -1"},
		},
		{
			name: "no tiers",
			in:   "quota_manager: {}\n",
			want: []string{"quota_manager.tiers: missing; define at least one tier, e.g. freemium: {api_calls_per_hour: 10, priority: low}"},
		},
		{
			name: "odd map keys are quoted",
			in:   tiers + "  users:\n    alice@example.com: {tier: gold}\n",
			want: []string{`quota_manager.users["alice@example.com"].tier: unknown tier "gold"; want one of freemium`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			wantProblems(t, err, tt.want)
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty", in: " \n", want: "config: the file is empty"},
		{name: "encrypted", in: "age-encryption.org/v1\n-> X25519 abc\n", want: "config: the data is age-encrypted; load it with Load or LoadData"},
		{name: "bad JSON", in: "{\n\"quota_manager\": {,}}", want: "config: invalid JSON near line 2"},
		{name: "YAML in flow style", in: "{quota_manager: {tiers: {freemium: {api_calls_per_hour: 10}}}}", want: ""},
		{name: "bad YAML", in: "quota_manager:\n  tiers: [\n", want: "config: invalid YAML"},
		{name: "duplicate YAML key", in: "quota_manager: {}\nquota_manager: {}\n", want: "config: invalid YAML"},
		{name: "not an object", in: "- 1\n", want: "config: the file must hold an object with a quota_manager key, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Errorf("Parse() = %v, want success", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Parse() = %v, want an error starting %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestValidationErrorText(t *testing.T) {
	_, err := Parse([]byte("quota_manager:\n  tiers:\n    a: {api_calls_per_hour: -1, priority: x}\n"))
	want := "config: 2 problems:\n" +
		"  quota_manager.tiers.a.priority: unknown priority \"x\": want one of low, medium, high, critical\n" +
		"  quota_manager.tiers.a.api_calls_per_hour: must be > 0, got -1"
	if err == nil || err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	_, err = Parse([]byte("quota_manager:\n  tiers:\n    a: {api_calls_per_hour: -1}\n"))
	if want := "config: quota_manager.tiers.a.api_calls_per_hour: must be > 0, got -1"; err == nil || err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestSuggest(t *testing.T) {
	fields := []string{"api_calls_per_hour", "api_calls_per_day", "priority", "limits"}
	tests := []struct {
		name, in, want string
	}{
		{name: "transposition", in: "api_calls_per_huor", want: "api_calls_per_hour"},
		{name: "missing letter", in: "priorty", want: "priority"},
		{name: "case", in: "Limits", want: "limits"},
		{name: "nothing close", in: "zzz", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := suggest(tt.in, fields); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDocumentedSpellings(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name  string
		in    string
		check func(f *File) string // "" when f is as documented
	}{
		{"durability batch", tiers + "store: {durability: batch}\n", func(f *File) string {
			return wantEq("store.durability", f.Store.Durability, DurabilityBatch)
		}},
		{"durability async is batch", tiers + "store: {durability: async}\n", func(f *File) string {
			return wantEq("store.durability", f.Store.Durability, DurabilityBatch)
		}},
		{"durability sync", tiers + "store: {durability: sync}\n", func(f *File) string {
			return wantEq("store.durability", f.Store.Durability, DurabilitySync)
		}},
		{"durability default", tiers, func(f *File) string {
			return wantEq("store.durability", f.Store.Durability, DurabilityBatch)
		}},
		{"trusted header defaults to x-user-id", tiers + "identity: {header: {trusted: true}}\n", func(f *File) string {
			if msg := wantEq("identity.header.name", f.Identity.Header.Name, "x-user-id"); msg != "" {
				return msg
			}
			if !slices.Contains(f.Identity.Sources, SourceHeader) {
				return fmt.Sprintf("identity.sources = %v, want header in them", f.Identity.Sources)
			}
			return ""
		}},
		{"header source listed, trusted, no name", tiers + "identity: {sources: [header], header: {trusted: true}}\n", func(f *File) string {
			return wantEq("identity.header.name", f.Identity.Header.Name, "x-user-id")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse() = %v, want the documented spelling accepted", err)
			}
			if msg := tt.check(f); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func wantEq(path, got, want string) string {
	if got != want {
		return fmt.Sprintf("%s = %q, want %q", path, got, want)
	}
	return ""
}
