package config

import (
	"slices"
	"testing"
	"time"
)

func TestServiceBlocks(t *testing.T) {
	const in = `
quota_manager:
  tiers:
    freemium: {api_calls_per_hour: 10, priority: low}
    premium: {api_calls_per_hour: 1000, priority: high}
  alerts:
    enabled: true
    threshold_percentage: 80
    channels: [webhook, dashboard]
    queue_size: 64
    webhook: {url: "https://hooks.example.com/q", secret_env: HOOK_KEY, max_retries: 2, backoff: 100ms}
    dashboard: {size: 50}
    anomaly: {enabled: true, window: 30s, factor: 4}
ledger:
  dsn: /var/lib/quotagate/ledger.db
  retention_days: 90
  prices: {freemium: 0, premium: 0.002}
admin:
  addr: 127.0.0.1:8081
  tokens:
    - {name: ops, sha256: "` + "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4" + `", scopes: [admin]}
  trace_url: "https://tempo.example/explore?traceId={trace_id}"
`
	f, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	a := f.QuotaManager.Alerts
	if !a.Enabled || a.ThresholdPercentage != 80 || !slices.Equal(a.Channels, []string{"webhook", "dashboard"}) {
		t.Errorf("Alerts = %+v", a)
	}
	if a.Webhook.URL != "https://hooks.example.com/q" || a.Webhook.SecretEnv != "HOOK_KEY" || a.Webhook.Backoff.D() != 100*time.Millisecond ||
		a.Webhook.MaxRetries != 2 || a.Dashboard.Size != 50 || !a.Anomaly.Enabled || a.Anomaly.Factor != 4 ||
		a.Anomaly.Window.D() != 30*time.Second || a.QueueSize != 64 {
		t.Errorf("alert channel settings = %+v", a)
	}
	if f.Ledger.DSN != "/var/lib/quotagate/ledger.db" || f.Ledger.RetentionDays != 90 || f.Ledger.Prices["premium"] != 0.002 {
		t.Errorf("Ledger = %+v", f.Ledger)
	}
	if f.Admin.Addr != "127.0.0.1:8081" || len(f.Admin.Tokens) != 1 || !slices.Equal(f.Admin.Tokens[0].Scopes, []string{"admin"}) ||
		f.Admin.TraceURL != "https://tempo.example/explore?traceId={trace_id}" {
		t.Errorf("Admin = %+v", f.Admin)
	}
	if f.Store.Kind != "" {
		t.Errorf("Store.Kind = %q, want empty (sqlite under --data-dir, else memory)", f.Store.Kind)
	}
}

func TestBadServiceBlocks(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "ledger",
			in:   tiers + "ledger: {retention_days: -1, queue_size: -2, prices: {gold: 1, freemium: -0.5}}\n",
			want: []string{
				"ledger.retention_days: must be >= 0 (0 keeps everything), got -1",
				"ledger.queue_size: must be >= 0 (0 means 65536), got -2",
				"ledger.prices.freemium: must be a price >= 0 per token, got -0.5",
				`ledger.prices.gold: unknown tier "gold"; want one of freemium`,
			},
		},
		{
			name: "unknown alert channel",
			in:   tiers + "  alerts: {channels: [pager]}\n",
			want: []string{`quota_manager.alerts.channels[0]: unknown channel "pager"; want one of dashboard, email, webhook`},
		},
		{
			name: "mistyped admin block",
			in:   tiers + "admin: {tokens: [{name: ops, scopes: read}], tls: {cert: c.pem}}\n",
			want: []string{
				"admin.tls.cert: unknown field; want one of cert_file, key_file, client_ca_file",
				`admin.tokens[0].scopes: want a list, got "read"`,
			},
		},
		{
			name: "mistyped duration in the alerts block",
			in:   tiers + "  alerts: {webhook: {timeout: soon}, anomaly: {window: 5}}\n",
			want: []string{
				"quota_manager.alerts.anomaly.window: want a duration such as 2s or 1m30s, got 5",
				`quota_manager.alerts.webhook.timeout: invalid duration "soon": want a Go duration such as 2s or 1m30s`,
			},
		},
		{
			name: "store kind",
			in:   tiers + "store: {kind: etcd}\n",
			want: []string{`store.kind: unknown store "etcd"; want memory, sqlite or redis`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			wantProblems(t, err, tt.want)
		})
	}
}
