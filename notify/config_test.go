package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

func TestExampleAlertsBlockLoads(t *testing.T) {
	cfg := Config{Enabled: true, ThresholdPercentage: 90, Channels: []Channel{ChannelEmail, ChannelDashboard}}
	var logs bytes.Buffer
	n, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n.dashboard == nil || n.mail != nil {
		t.Errorf("active channels: dashboard %v, email %v; want the dashboard only (no smtp_addr)", n.dashboard != nil, n.mail != nil)
	}
	if !strings.Contains(logs.String(), "email.smtp_addr is not set") {
		t.Errorf("New did not warn about the unconfigured email channel:\n%s", logs.String())
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; empty means valid
	}{
		{"zero value", func(*Config) {}, ""},
		{"threshold above 100", func(c *Config) { c.ThresholdPercentage = 120 }, "threshold_percentage: must be between 1 and 100, got 120"},
		{"zero channel", func(c *Config) { c.Channels = []Channel{0} }, "channels[0]: must be one of"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "queue_size: must be >= 0, got -1"},
		{"webhook URL not http", func(c *Config) { c.Webhook = WebhookConfig{URL: "ftp://x/y", Secret: "k"} }, `webhook.url: must be an absolute http or https URL, got "ftp://x/y"`},
		{"webhook URL token redacted", func(c *Config) { c.Webhook = WebhookConfig{URL: "/relative?token=abc", Secret: "k"} }, `got "/relative"`},
		{"webhook without secret", func(c *Config) { c.Webhook = WebhookConfig{URL: "https://h.example/x"} }, "webhook: set secret_env (or secret)"},
		{"webhook with both secrets", func(c *Config) {
			c.Webhook = WebhookConfig{URL: "https://h.example/x", Secret: "k", SecretEnv: "E"}
		}, "set only one of secret and secret_env"},
		{"retries below -1", func(c *Config) { c.Webhook.MaxRetries = -2 }, "webhook.max_retries: must be >= -1"},
		{"negative timeout", func(c *Config) { c.Email.Timeout = -time.Second }, "email.timeout: must be positive, got -1s"},
		{"smtp addr without port", func(c *Config) { c.Email = EmailConfig{SMTPAddr: "smtp.example.com", From: "q@example.com"} }, `email.smtp_addr: must be host:port, got "smtp.example.com"`},
		{"smtp without from", func(c *Config) { c.Email = EmailConfig{SMTPAddr: "smtp.example.com:25"} }, "email.from: required"},
		{"display name in operator address", func(c *Config) { c.Email.ToOperators = []string{"Ops <ops@example.com>"} }, "email.to_operators[0]: must be a plain email address"},
		{"header injection in from", func(c *Config) { c.Email.From = "q@example.com\r\nBcc: x@y.z" }, "email.from: must be a plain email address"},
		{"bad user address", func(c *Config) { c.Email.UserAddresses = map[string]string{"alice": "nope"} }, `email.user_addresses["alice"]`},
		{"template without placeholder", func(c *Config) { c.Email.UserAddressTemplate = "all@example.com" }, "must contain {subject}"},
		{"clear-text auth to a remote server", func(c *Config) {
			c.Email = EmailConfig{SMTPAddr: "smtp.example.com:25", From: "q@example.com", StartTLS: TLSDisabled, Username: "u"}
		}, `email.starttls: "disabled" with a username would send the password in clear text`},
		{"clear-text auth to loopback", func(c *Config) {
			c.Email = EmailConfig{SMTPAddr: "127.0.0.1:25", From: "q@example.com", StartTLS: TLSDisabled, Username: "u"}
		}, ""},
		{"relative upgrade URL", func(c *Config) { c.Email.UpgradeURL = "/upgrade" }, "email.upgrade_url: must be an absolute URL"},
		{"short anomaly window", func(c *Config) { c.Anomaly.Window = time.Millisecond }, "anomaly.window: must be at least 1s, got 1ms"},
		{"factor of one", func(c *Config) { c.Anomaly.Factor = 1 }, "anomaly.factor: must be greater than 1, got 1"},
		{"negative min rate", func(c *Config) { c.Anomaly.MinRate = -1 }, "anomaly.min_rate: must be >= 0"},
		{"smoothing above one", func(c *Config) { c.Anomaly.Smoothing = 1.5 }, "anomaly.smoothing: must be in (0, 1]"},
		{"warning without verb", func(c *Config) { c.Messages.Warning = "Careful." }, "messages.warning: must contain %s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "notify: "):
				t.Errorf("Validate = %v, want the notify: prefix", err)
			case err != nil && len(engine.FieldErrors(err)) == 0:
				t.Errorf("Validate = %v, want *engine.FieldError problems", err)
			}
		})
	}
}

func TestNewResolvesSecrets(t *testing.T) {
	hook := Config{Enabled: true, Channels: []Channel{ChannelWebhook},
		Webhook: WebhookConfig{URL: "https://h.example/x", SecretEnv: "QG_HOOK"}}
	tests := []struct {
		name   string
		getenv func(string) string
		want   string
	}{
		{"set", func(string) string { return "k" }, ""},
		{"unset", func(string) string { return "" }, "environment variable QG_HOOK is empty or unset"},
		{"no environment", nil, "no environment was passed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(hook, Options{Getenv: tt.getenv})
			if tt.want == "" {
				if err != nil || string(n.hook.secret) != "k" {
					t.Errorf("New = %v; want the secret from the environment", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSecretIsNeverPrinted(t *testing.T) {
	c := WebhookConfig{URL: "https://h.example/x", Secret: "hunter2"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "webhook", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logs.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if out, _ := json.Marshal(Config{Webhook: c}); strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "REDACTED") {
		t.Errorf("JSON = %s, want the secret redacted", out)
	}
	e := EmailConfig{SMTPAddr: "smtp.example.com:587", Username: "u", Password: "pa55"}
	var elogs bytes.Buffer
	slog.New(slog.NewJSONHandler(&elogs, nil)).Info("config", "email", e)
	out, _ := json.Marshal(e)
	for _, s := range []string{fmt.Sprint(Config{Email: e}), fmt.Sprintf("%#v", e), elogs.String(), string(out)} {
		if strings.Contains(s, "pa55") || !strings.Contains(s, "smtp.example.com") {
			t.Errorf("email settings printed as %s; want the address and no password", s)
		}
	}
}

func TestEnumsRoundTrip(t *testing.T) {
	for k := KindThreshold; k <= KindAnomaly; k++ {
		if got, err := ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	for c := ChannelWebhook; c <= ChannelDashboard; c++ {
		if got, err := ParseChannel(c.String()); err != nil || got != c {
			t.Errorf("ParseChannel(%q) = %v, %v", c.String(), got, err)
		}
	}
	for _, m := range []TLSMode{TLSRequired, TLSDisabled} {
		if got, err := ParseTLSMode(m.String()); err != nil || got != m {
			t.Errorf("ParseTLSMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if Kind(0).String() != "Kind(0)" || Channel(9).String() != "Channel(9)" || TLSMode(5).String() != "TLSMode(5)" {
		t.Error("out-of-range enums do not print their number")
	}
}
