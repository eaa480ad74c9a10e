package main

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/notify"
	"github.com/quotagate/quotagate/store/durable"
)

// TestCheckComponentsPaths pins the problems the components report
// through the wiring, with their paths in the file. The expected lists are
// what `config validate` printed when config validated the components
// itself, except that the route prefix problems now follow the file's own
// route problems.
func TestCheckComponentsPaths(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: `admin token hash`,
			in:   tiers + "admin: {addr: \"127.0.0.1:8081\", tokens: [{name: ops, sha256: abc, scopes: [read]}]}\n",
			want: []string{
				`admin.tokens[0].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
			},
		},
		{
			name: `unknown admin scope beside a bad hash`,
			in:   tiers + "admin: {tokens: [{name: ops, sha256: abc, scopes: [root]}]}\n",
			want: []string{
				`admin.tokens[0].scopes[0]: admin: unknown scope "root": want read, write or admin`,
				`admin.tokens[0].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
			},
		},
		{
			name: `a token whose every scope is unknown`,
			in:   tiers + "admin: {tokens: [{name: ops, sha256: \"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4\", scopes: [root, bogus]}]}\n",
			want: []string{
				`admin.tokens[0].scopes[0]: admin: unknown scope "root": want read, write or admin`,
				`admin.tokens[0].scopes[1]: admin: unknown scope "bogus": want read, write or admin`,
			},
		},
		{
			name: `every admin field`,
			in:   tiers + "admin: {addr: \"8081\", trace_url: \"javascript:x\", tls: {client_ca_file: ca.pem}, auth_failures_per_minute: -1, auth_failures_per_address_per_minute: -3, tokens: [{sha256: abc}, {name: a, sha256: abc, scopes: [read, root]}, {name: a, sha256: abc, scopes: [write]}]}\n",
			want: []string{
				`admin.tokens[1].scopes[1]: admin: unknown scope "root": want read, write or admin`,
				`admin.addr: must be host:port, such as 127.0.0.1:8081, got "8081"`,
				`admin.tokens[0].name: must not be empty: it names the actor in logs and the ledger`,
				`admin.tokens[0].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
				`admin.tokens[0].scopes: must list at least one of read, write, admin`,
				`admin.tokens[1].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
				`admin.tokens[2].name: duplicate name "a" (also tokens[1])`,
				`admin.tokens[2].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
				`admin.trace_url: must be an http or https URL, got "javascript:x"`,
				`admin.tls.client_ca_file: requires cert_file and key_file: client certificates need TLS`,
				`admin.auth_failures_per_minute: must be >= 0, got -1`,
				`admin.auth_failures_per_address_per_minute: must be >= 0 (0 means 20 times auth_failures_per_minute), got -3`,
			},
		},
		{
			name: `webhook without a key`,
			in:   tiers + "  alerts: {enabled: true, channels: [webhook], webhook: {url: \"https://h.example/x\"}}\n",
			want: []string{
				`quota_manager.alerts.webhook: set secret_env (or secret) so that deliveries can be signed`,
			},
		},
		{
			name: `webhook settings`,
			in:   tiers + "  alerts: {webhook: {url: \"ftp://h/x?token=1\", secret: k, secret_env: E, max_retries: -3, timeout: -1s}}\n",
			want: []string{
				`quota_manager.alerts.webhook.url: must be an absolute http or https URL, got "ftp://h/x"`,
				`quota_manager.alerts.webhook: set only one of secret and secret_env`,
				`quota_manager.alerts.webhook.max_retries: must be >= -1 (-1 disables retries), got -3`,
				`quota_manager.alerts.webhook.timeout: must be positive, got -1s`,
			},
		},
		{
			name: `email settings, with an unknown starttls mode`,
			in:   tiers + "  alerts: {email: {smtp_addr: \"smtp.example.com\", starttls: maybe, username: u, password: p, password_env: P, from: \"X <a@b.c>\", to_operators: [nope], user_addresses: {alice: nope}, user_address_template: x, upgrade_url: /up, timeout: -2s, backoff: -1s}}\n",
			want: []string{
				`quota_manager.alerts.email.starttls: notify: unknown starttls mode "maybe": want required or disabled`,
				`quota_manager.alerts.email.smtp_addr: must be host:port, got "smtp.example.com"`,
				`quota_manager.alerts.email.from: must be a plain email address, got "X <a@b.c>"`,
				`quota_manager.alerts.email.to_operators[0]: must be a plain email address, got "nope"`,
				`quota_manager.alerts.email.user_addresses["alice"]: must be a plain email address, got "nope"`,
				`quota_manager.alerts.email.user_address_template: must contain {subject}, got "x"`,
				`quota_manager.alerts.email.upgrade_url: must be an absolute URL, got "/up"`,
				`quota_manager.alerts.email.timeout: must be positive, got -2s`,
				`quota_manager.alerts.email.backoff: must be positive, got -1s`,
			},
		},
		{
			name: `clear-text SMTP auth to a remote server`,
			in:   tiers + "  alerts: {email: {smtp_addr: \"smtp.example.com:25\", starttls: disabled, username: u, from: a@b.c}}\n",
			want: []string{
				`quota_manager.alerts.email.starttls: "disabled" with a username would send the password in clear text; it is only allowed for a loopback smtp_addr, got "smtp.example.com:25"`,
			},
		},
		{
			name: `alerts block and anomaly detector`,
			in:   tiers + "  alerts: {threshold_percentage: 120, channels: [pager, webhook, webhook], queue_size: -1, dedup_size: -2, dashboard: {size: -3}, anomaly: {window: 1ms, factor: 1, min_rate: -1, warm_up: -1, smoothing: 2, max_subjects: -1}, messages: {warning: nope}}\n",
			want: []string{
				`quota_manager.alerts.threshold_percentage: must be from 1 to 100, got 120`,
				`quota_manager.alerts.channels[0]: unknown channel "pager"; want one of dashboard, email, webhook`,
				`quota_manager.alerts.channels[2]: "webhook" is listed twice; remove one`,
				`quota_manager.alerts.queue_size: must be >= 0, got -1`,
				`quota_manager.alerts.dedup_size: must be >= 0, got -2`,
				`quota_manager.alerts.dashboard.size: must be >= 0, got -3`,
				`quota_manager.alerts.anomaly.window: must be at least 1s, got 1ms`,
				`quota_manager.alerts.anomaly.factor: must be greater than 1, got 1`,
				`quota_manager.alerts.anomaly.min_rate: must be >= 0, got -1`,
				`quota_manager.alerts.anomaly.warm_up: must be >= 0, got -1`,
				`quota_manager.alerts.anomaly.smoothing: must be in (0, 1], got 2`,
				`quota_manager.alerts.anomaly.max_subjects: must be >= 0, got -1`,
				`quota_manager.alerts.messages.warning: must contain %s for the period ("Approaching %s limit."), got "nope"`,
			},
		},
		{
			name: `route prefixes, list form`,
			in:   tiers + "routes:\n  - {path_prefix: /v1/%74ranslate, action: translate}\n  - {path_prefix: \"/v1/translate?x=1\", action: translate}\n  - {path_prefix: v1/x, action: translate}\n  - {path_prefix: /a/../b, action: translate}\n",
			want: []string{
				`routes[2].path_prefix: must start with /, got "v1/x"`,
				`routes[0].path_prefix: "/v1/%74ranslate" is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write "/v1/translate"`,
				`routes[1].path_prefix: "/v1/translate?x=1" is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write "/v1/translate"`,
				`routes[3].path_prefix: "/a/../b" is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write "/b"`,
			},
		},
		{
			name: `route prefixes, mapping form`,
			in:   tiers + "routes:\n  rules:\n    - {path_prefix: /v1//translate, action: translate}\n    - {path_prefix: /v1//translate, action: translate}\n",
			want: []string{
				`routes.rules[1]: has the same path_prefix and method as routes.rules[0]; remove one`,
				`routes.rules[0].path_prefix: "/v1//translate" is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write "/v1/translate"`,
				`routes.rules[1].path_prefix: "/v1//translate" is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write "/v1/translate"`,
			},
		},
		{
			name: `mistyped values`,
			in:   "quota_manager: {tiers: {free: {api_calls_per_hour: 10}}, alerts: {email: {starttls: 5}}}\nadmin: {tokens: [{name: x, sha256: abc, scopes: [1]}]}\n",
			want: []string{
				`admin.tokens[0].scopes[0]: want a string, got 1`,
				`quota_manager.alerts.email.starttls: want a string, got 5`,
				`admin.tokens[0].sha256: must be 64 hex digits, the SHA-256 of the token (printf %s TOKEN | sha256sum), got 3 characters`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParseWith([]byte(tt.in), checkComponents)
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ParseWith() = %v, want a *config.ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

// TestComponentOptions checks that a valid file's blocks become the
// components' options field by field, and that the example configuration
// and the embedded default pass the components' checks.
func TestComponentOptions(t *testing.T) {
	const in = `
quota_manager:
  tiers:
    freemium: {api_calls_per_hour: 10, priority: low}
  alerts:
    enabled: true
    threshold_percentage: 80
    channels: [webhook, dashboard, email]
    queue_size: 64
    dedup_size: 9
    webhook: {url: "https://hooks.example.com/q", secret: hook-key, max_retries: 2, timeout: 3s, backoff: 100ms, max_backoff: 1m}
    email: {smtp_addr: "127.0.0.1:25", starttls: disabled, username: u, password_env: SMTP_PW, from: q@example.com,
            to_operators: [ops@example.com], user_addresses: {alice: a@example.com}, user_address_template: "{subject}@example.com",
            upgrade_url: "https://example.com/up", max_retries: -1, timeout: 4s, backoff: 5ms, max_backoff: 6s}
    dashboard: {size: 50}
    anomaly: {enabled: true, window: 30s, factor: 4, min_rate: 0.5, warm_up: 2, smoothing: 0.3, max_subjects: 7}
    messages: {warning: "Nearly %s.", exceeded: E, balance_low: B, insufficient_balance: I, anomaly: A}
store: {flush_interval: 250ms, redis: {addr: "127.0.0.1:6379", timeout: 20ms, prefix: p, lease: 3, wait_replicas: 1, db: 2, username: ru, password: rp}}
server: {access_log: {pending_size: 77, pending_max_age: 2m}}
ledger: {queue_size: 11, retention_days: 2}
admin:
  addr: 127.0.0.1:8081
  tokens:
    - {name: ops, sha256: "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4", scopes: [read, admin], team: blue}
  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}
  trace_url: "https://tempo.example/explore?traceId={trace_id}"
  auth_failures_per_minute: 3
  auth_failures_per_address_per_minute: 30
`
	f, err := config.ParseWith([]byte(in), checkComponents)
	if err != nil {
		t.Fatal(err)
	}
	a, err := adminConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	wantAdmin := admin.Config{Addr: "127.0.0.1:8081",
		Tokens:   []admin.TokenConfig{{Name: "ops", SHA256: "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4", Scopes: []admin.Scope{admin.ScopeRead, admin.ScopeAdmin}, Team: "blue"}},
		TLS:      admin.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"},
		TraceURL: "https://tempo.example/explore?traceId={trace_id}", AuthFailuresPerMinute: 3, AuthFailuresPerAddressPerMinute: 30}
	if a.Addr != wantAdmin.Addr || a.TLS != wantAdmin.TLS || a.TraceURL != wantAdmin.TraceURL ||
		a.AuthFailuresPerMinute != 3 || a.AuthFailuresPerAddressPerMinute != 30 || len(a.Tokens) != 1 ||
		a.Tokens[0].Name != "ops" || a.Tokens[0].SHA256 != wantAdmin.Tokens[0].SHA256 || a.Tokens[0].Team != "blue" ||
		!slices.Equal(a.Tokens[0].Scopes, wantAdmin.Tokens[0].Scopes) {
		t.Errorf("adminConfig = %+v, want %+v", a, wantAdmin)
	}
	n, err := notifyConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Enabled || n.ThresholdPercentage != 80 || n.QueueSize != 64 || n.DedupSize != 9 ||
		!slices.Equal(n.Channels, []notify.Channel{notify.ChannelWebhook, notify.ChannelDashboard, notify.ChannelEmail}) {
		t.Errorf("notifyConfig = %+v", n)
	}
	if w := n.Webhook; w.URL != "https://hooks.example.com/q" || w.Secret != "hook-key" || w.SecretEnv != "" || w.MaxRetries != 2 ||
		w.Timeout != 3*time.Second || w.Backoff != 100*time.Millisecond || w.MaxBackoff != time.Minute {
		t.Errorf("webhook = %v", w)
	}
	if e := n.Email; e.SMTPAddr != "127.0.0.1:25" || e.StartTLS != notify.TLSDisabled || e.Username != "u" || e.Password != "" ||
		e.PasswordEnv != "SMTP_PW" || e.From != "q@example.com" || !slices.Equal(e.ToOperators, []string{"ops@example.com"}) ||
		e.UserAddresses["alice"] != "a@example.com" || e.UserAddressTemplate != "{subject}@example.com" ||
		e.UpgradeURL != "https://example.com/up" || e.MaxRetries != -1 || e.Timeout != 4*time.Second ||
		e.Backoff != 5*time.Millisecond || e.MaxBackoff != 6*time.Second {
		t.Errorf("email = %v", e)
	}
	if an := n.Anomaly; !an.Enabled || an.Window != 30*time.Second || an.Factor != 4 || an.MinRate != 0.5 || an.WarmUp != 2 ||
		an.Smoothing != 0.3 || an.MaxSubjects != 7 || n.Dashboard.Size != 50 {
		t.Errorf("anomaly, dashboard = %+v, %+v", an, n.Dashboard)
	}
	if m := n.Messages; m != (notify.Messages{Warning: "Nearly %s.", Exceeded: "E", BalanceLow: "B", InsufficientBalance: "I", Anomaly: "A"}) {
		t.Errorf("messages = %+v", m)
	}
	r := redisOptions(f.Store.Redis)
	if r.Addr != "127.0.0.1:6379" || r.Timeout != 20*time.Millisecond || r.Prefix != "p" || r.Lease != 3 || r.WaitReplicas != 1 ||
		r.DB != 2 || r.Username != "ru" || r.Password != "rp" {
		t.Errorf("redisOptions = %+v", r)
	}
	if l := ledgerWriterOptions(f, nil); l.QueueSize != 11 || l.FlushInterval != 250*time.Millisecond || l.Retention != 48*time.Hour {
		t.Errorf("ledgerWriterOptions = %+v", l)
	}
	if o := telemetryOptions(mustParse(t, "quota_manager: {tiers: {free: {api_calls_per_hour: 1}}}\ntracing: {sample_allowed: 0.25, sample_rejected: 0.5}\n")); o.SampleAllowed != 0.25 || o.SampleRejected != 0.5 {
		t.Errorf("telemetryOptions = %+v", o)
	}
	e, err := engineRules(f)
	if err != nil || len(e.Tiers) != 1 {
		t.Errorf("engineRules = %+v, %v; want one tier", e, err)
	}
	if eo := engineOptions(f, &durable.Backends{}, nil, nil); eo.FlushInterval != 250*time.Millisecond || eo.Deferrer != nil ||
		eo.PendingSize != 77 || eo.PendingMaxAge != 2*time.Minute {
		t.Errorf("engineOptions = %+v; want the store's flush interval, the access log's pending bounds and no Deferrer", eo)
	}
	for name, data := range map[string][]byte{"default": config.Default(), "example": readFile(t, "../../config/testdata/example.json")} {
		if _, err := config.ParseWith(data, checkComponents); err != nil {
			t.Errorf("%s configuration: %v", name, err)
		}
	}
}

func TestCheckComponentsKeepsTheFileProblems(t *testing.T) {
	// A file with problems of its own still gets the components' checked,
	// and a check that finds nothing adds nothing.
	const in = "quota_manager:\n  tiers:\n    free: {api_calls_per_hour: -1}\nadmin: {addr: nope}\n"
	_, err := config.ParseWith([]byte(in), checkComponents)
	fes := engine.FieldErrors(err)
	var paths []string
	for _, fe := range fes {
		paths = append(paths, fe.Path)
	}
	if want := []string{"quota_manager.tiers.free.api_calls_per_hour", "admin.addr"}; !slices.Equal(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
	if err := checkComponents(mustParse(t, "quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 1}\n")); err != nil {
		t.Errorf("checkComponents(valid) = %v", err)
	}
	if !strings.Contains(err.Error(), "admin.addr: must be host:port") {
		t.Errorf("error = %v", err)
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		path, base string
		want       bool
	}{
		{"email", "email", true}, {"email.starttls", "email", true}, {"tokens[0].scopes[1]", "tokens[0].scopes", true},
		{"emails", "email", false}, {"email", "email.starttls", false}, {"tokens[0].name", "tokens[0].scopes", false},
	} {
		if got := within(tt.path, tt.base); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.path, tt.base, got, tt.want)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, yaml string) *config.File {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// FuzzCheckComponents feeds arbitrary files through the file's validation
// and the components' checks: the checks must not assume a valid file,
// every problem they add has a path inside the block it checks, and a file
// that passes both builds every component's options.
func FuzzCheckComponents(f *testing.F) {
	f.Add(config.Default())
	f.Add([]byte("quota_manager:\n  tiers: {free: {api_calls_per_hour: 10}}\n  alerts: {channels: [email, pager], email: {starttls: maybe, smtp_addr: x}}\nadmin: {tokens: [{scopes: [root, read]}, {}]}\nroutes: [{path_prefix: /a//b, action: x}]\n"))
	f.Add([]byte(`{"quota_manager": {"tiers": {}}, "admin": {"tokens": [{"scopes": 3}]}, "routes": {"rules": [{"path_prefix": "/%7e"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fileProblems int
		file, err := config.Parse(data)
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			fileProblems = len(ve.Problems)
		}
		_, cerr := config.ParseWith(data, checkComponents)
		if err != nil && !errors.As(err, &ve) {
			if cerr == nil || cerr.Error() != err.Error() {
				t.Fatalf("a file that does not decode: Parse = %v, ParseWith = %v", err, cerr)
			}
			return
		}
		var cve *config.ValidationError
		if cerr != nil && !errors.As(cerr, &cve) {
			t.Fatalf("ParseWith = %v, want nil or a *config.ValidationError", cerr)
		}
		if cve != nil {
			if len(cve.Problems) < fileProblems {
				t.Fatalf("the checks dropped some of the file's problems: %d, then %d", fileProblems, len(cve.Problems))
			}
			for _, p := range cve.Problems[fileProblems:] {
				if !within(p.Path, "admin") && !within(p.Path, "quota_manager.alerts") && !within(p.Path, "routes") {
					t.Fatalf("a component problem outside the components' blocks: %v", p)
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("the checks passed a file that does not validate: %v", err)
		}
		if _, err := adminConfig(file); err != nil {
			t.Fatalf("adminConfig of a checked file: %v", err)
		}
		if _, err := notifyConfig(file); err != nil {
			t.Fatalf("notifyConfig of a checked file: %v", err)
		}
		if _, err := engineRules(file); err != nil {
			t.Fatalf("engineRules of a checked file: %v", err)
		}
	})
}
