package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"
)

// Config configures a Notifier. It is the configuration file's alerts block
// (quota_manager.alerts) with the settings of each channel added. The zero
// value of every optional field means its documented default. A Config must
// not be changed after it is passed to New.
type Config struct {
	// Enabled turns alerting on. When false, Emit and Observe do nothing.
	Enabled bool `json:"enabled"`
	// ThresholdPercentage is the usage percentage of a limit at which the
	// engine emits a threshold event. The engine reads it
	// (engine.AlertConfig); it is here so the alerts block decodes as one
	// struct. Zero means 90.
	ThresholdPercentage int `json:"threshold_percentage,omitempty"`
	// Channels lists where alerts go: "webhook", "email", "dashboard".
	// A listed channel whose settings are missing (an email channel with no
	// smtp_addr) is inactive, and New logs a warning saying so.
	Channels []Channel `json:"channels"`
	// QueueSize bounds the alerts waiting for delivery, both in front of the
	// dispatcher and in front of each channel. Zero means 1024.
	QueueSize int `json:"queue_size,omitempty"`
	// DedupSize bounds how many recent alert keys (kind, subject, limit and
	// window) are remembered for deduplication. Zero means 100 000.
	DedupSize int `json:"dedup_size,omitempty"`

	Webhook   WebhookConfig   `json:"webhook,omitzero"`
	Email     EmailConfig     `json:"email,omitzero"`
	Dashboard DashboardConfig `json:"dashboard,omitzero"`
	Anomaly   AnomalyConfig   `json:"anomaly,omitzero"`
	// Messages overrides the texts of alerts. Empty fields take the
	// defaults documented on Messages.
	Messages Messages `json:"messages,omitzero"`
}

// WebhookConfig configures the webhook channel: each alert is POSTed as JSON,
// signed with HMAC-SHA256.
type WebhookConfig struct {
	// URL is the http or https endpoint. Empty makes the channel inactive.
	URL string `json:"url,omitempty"`
	// Secret is the HMAC key. Prefer SecretEnv, or an encrypted config file.
	Secret Secret `json:"secret,omitempty"`
	// SecretEnv names an environment variable holding the HMAC key. It is
	// resolved once, in New, through Options.Getenv.
	SecretEnv string `json:"secret_env,omitempty"`
	// MaxRetries is how many times a failed delivery is retried before the
	// alert is dead-lettered. Zero means 3; -1 means never retry.
	MaxRetries int `json:"max_retries,omitempty"`
	// Timeout bounds one delivery attempt. Zero means 5s.
	Timeout Duration `json:"timeout,omitzero"`
	// Backoff is the wait before the first retry; it doubles on each retry,
	// with jitter, up to MaxBackoff. Zero means 500ms.
	Backoff Duration `json:"backoff,omitzero"`
	// MaxBackoff caps the wait between retries. Zero means 30s.
	MaxBackoff Duration `json:"max_backoff,omitzero"`
}

// EmailConfig configures the email channel: SMTP with STARTTLS and AUTH
// PLAIN. Users get the user template, operators the operator template.
type EmailConfig struct {
	// SMTPAddr is the server's host:port. Empty makes the channel inactive.
	SMTPAddr string `json:"smtp_addr,omitempty"`
	// StartTLS is "required" (the default) or "disabled". Disabled sends in
	// clear text and is only for a relay on loopback.
	StartTLS TLSMode `json:"starttls,omitzero"`
	// Username and Password authenticate with AUTH PLAIN; an empty Username
	// means no authentication. PasswordEnv names an environment variable
	// holding the password, resolved once in New.
	Username    string `json:"username,omitempty"`
	Password    Secret `json:"password,omitempty"`
	PasswordEnv string `json:"password_env,omitempty"`
	// From is the sender address. Required when SMTPAddr is set.
	From string `json:"from,omitempty"`
	// ToOperators receive every alert through the operator template.
	ToOperators []string `json:"to_operators,omitempty"`
	// UserAddresses maps a subject id to the user's address.
	UserAddresses map[string]string `json:"user_addresses,omitempty"`
	// UserAddressTemplate builds a user's address for subjects not in
	// UserAddresses: "{subject}" is replaced by the subject id, as in
	// "{subject}@users.example.com". Empty means only UserAddresses.
	UserAddressTemplate string `json:"user_address_template,omitempty"`
	// UpgradeURL is the upgrade link offered in user emails; empty means none.
	UpgradeURL string `json:"upgrade_url,omitempty"`
	// MaxRetries, Timeout, Backoff and MaxBackoff are as for the webhook.
	MaxRetries int      `json:"max_retries,omitempty"`
	Timeout    Duration `json:"timeout,omitzero"`
	Backoff    Duration `json:"backoff,omitzero"`
	MaxBackoff Duration `json:"max_backoff,omitzero"`
}

// DashboardConfig configures the in-memory dashboard feed.
type DashboardConfig struct {
	// Size is how many recent alerts the feed keeps. Zero means 1000.
	Size int `json:"size,omitempty"`
}

// AnomalyConfig configures the anomaly detector: a subject whose request
// count in the current window exceeds Factor times its own moving baseline
// (an exponentially weighted moving average of its past windows) is
// reported, once per subject and window.
type AnomalyConfig struct {
	// Enabled turns the detector on; Observe does nothing otherwise.
	Enabled bool `json:"enabled"`
	// Window is the length of the counting window, aligned to the Unix
	// epoch. Zero means 1m.
	Window Duration `json:"window,omitzero"`
	// Factor is how many times the baseline a window's count must exceed.
	// Zero means 5.
	Factor float64 `json:"factor,omitempty"`
	// MinRate is the rate, in requests per second, below which nothing is
	// reported however far above its baseline. Zero means 1.
	MinRate float64 `json:"min_rate,omitempty"`
	// WarmUp is how many windows of history a subject needs before it can
	// be reported. Zero means 5.
	WarmUp int `json:"warm_up,omitempty"`
	// Smoothing is the weight of the newest window in the baseline, in
	// (0, 1]. Zero means 0.2.
	Smoothing float64 `json:"smoothing,omitempty"`
	// MaxSubjects bounds how many subjects' baselines are kept (an LRU).
	// Zero means 100 000.
	MaxSubjects int `json:"max_subjects,omitempty"`
}

// Messages are the texts of alerts. Empty fields take the defaults.
type Messages struct {
	// Warning is a format with one %s for the period adjective; it defaults
	// to "Approaching %s limit." ("Approaching daily limit.").
	Warning string `json:"warning,omitempty"`
	// Exceeded defaults to "Quota exceeded. Upgrade your plan or wait for
	// the reset."
	Exceeded string `json:"exceeded,omitempty"`
	// BalanceLow defaults to "Your token balance is running low."
	BalanceLow string `json:"balance_low,omitempty"`
	// InsufficientBalance defaults to "Insufficient token balance. Upgrade
	// your plan or add credits."
	InsufficientBalance string `json:"insufficient_balance,omitempty"`
	// Anomaly defaults to "Unusually high request rate."
	Anomaly string `json:"anomaly,omitempty"`
}

// Defaults applied by withDefaults.
const (
	defaultQueueSize   = 1024
	defaultDedupSize   = 100_000
	defaultRetries     = 3
	defaultTimeout     = 5 * time.Second
	defaultBackoff     = 500 * time.Millisecond
	defaultMaxBackoff  = 30 * time.Second
	defaultFeedSize    = 1000
	defaultAnomalyWin  = time.Minute
	defaultFactor      = 5
	defaultMinRate     = 1
	defaultWarmUp      = 5
	defaultSmoothing   = 0.2
	defaultMaxSubjects = 100_000
)

func (c Config) withDefaults() Config {
	c.QueueSize = orInt(c.QueueSize, defaultQueueSize)
	c.DedupSize = orInt(c.DedupSize, defaultDedupSize)
	w := &c.Webhook
	w.MaxRetries = orInt(w.MaxRetries, defaultRetries)
	w.Timeout = orDur(w.Timeout, defaultTimeout)
	w.Backoff = orDur(w.Backoff, defaultBackoff)
	w.MaxBackoff = orDur(w.MaxBackoff, defaultMaxBackoff)
	e := &c.Email
	e.MaxRetries = orInt(e.MaxRetries, defaultRetries)
	e.Timeout = orDur(e.Timeout, 2*defaultTimeout)
	e.Backoff = orDur(e.Backoff, defaultBackoff)
	e.MaxBackoff = orDur(e.MaxBackoff, defaultMaxBackoff)
	c.Dashboard.Size = orInt(c.Dashboard.Size, defaultFeedSize)
	a := &c.Anomaly
	a.Window = orDur(a.Window, defaultAnomalyWin)
	if a.Factor == 0 {
		a.Factor = defaultFactor
	}
	if a.MinRate == 0 {
		a.MinRate = defaultMinRate
	}
	a.WarmUp = orInt(a.WarmUp, defaultWarmUp)
	if a.Smoothing == 0 {
		a.Smoothing = defaultSmoothing
	}
	a.MaxSubjects = orInt(a.MaxSubjects, defaultMaxSubjects)
	c.Messages = c.Messages.withDefaults()
	return c
}

func (m Messages) withDefaults() Messages {
	m.Warning = orStr(m.Warning, "Approaching %s limit.")
	m.Exceeded = orStr(m.Exceeded, "Quota exceeded. Upgrade your plan or wait for the reset.")
	m.BalanceLow = orStr(m.BalanceLow, "Your token balance is running low.")
	m.InsufficientBalance = orStr(m.InsufficientBalance, "Insufficient token balance. Upgrade your plan or add credits.")
	m.Anomaly = orStr(m.Anomaly, "Unusually high request rate.")
	return m
}

// Validate reports every invalid field of c, each with its path relative to
// the alerts block and the offending value. Secrets are never included.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify: %s: "+format, append([]any{path}, args...)...))
	}
	if p := c.ThresholdPercentage; p < 0 || p > 100 {
		bad("threshold_percentage", "must be between 1 and 100, got %d", p)
	}
	for i, ch := range c.Channels {
		if ch == 0 {
			bad(fmt.Sprintf("channels[%d]", i), "must be one of webhook, email, dashboard")
		}
	}
	nonNegative(bad, "queue_size", c.QueueSize)
	nonNegative(bad, "dedup_size", c.DedupSize)
	nonNegative(bad, "dashboard.size", c.Dashboard.Size)
	c.Webhook.validate(bad)
	c.Email.validate(bad)
	c.Anomaly.validate(bad)
	if !strings.Contains(c.Messages.Warning, "%s") && c.Messages.Warning != "" {
		bad("messages.warning", "must contain %%s for the period (\"Approaching %%s limit.\"), got %q", c.Messages.Warning)
	}
	return errors.Join(errs...)
}

type badFunc func(path, format string, args ...any)

func (w WebhookConfig) validate(bad badFunc) {
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("webhook.url", "must be an absolute http or https URL, got %q", redactURL(w.URL))
		}
		if w.Secret == "" && w.SecretEnv == "" {
			bad("webhook", "set secret_env (or secret) so that deliveries can be signed")
		}
	}
	if w.Secret != "" && w.SecretEnv != "" {
		bad("webhook", "set only one of secret and secret_env")
	}
	retries(bad, "webhook", w.MaxRetries, w.Timeout, w.Backoff, w.MaxBackoff)
}

func (e EmailConfig) validate(bad badFunc) {
	if e.SMTPAddr != "" {
		if _, port, err := net.SplitHostPort(e.SMTPAddr); err != nil || port == "" {
			bad("email.smtp_addr", "must be host:port, got %q", e.SMTPAddr)
		}
		if e.From == "" {
			bad("email.from", "required when email.smtp_addr is set")
		}
	}
	if e.From != "" && !validAddress(e.From) {
		bad("email.from", "must be a plain email address, got %q", e.From)
	}
	for i, a := range e.ToOperators {
		if !validAddress(a) {
			bad(fmt.Sprintf("email.to_operators[%d]", i), "must be a plain email address, got %q", a)
		}
	}
	for s, a := range e.UserAddresses {
		if !validAddress(a) {
			bad(fmt.Sprintf("email.user_addresses[%q]", s), "must be a plain email address, got %q", a)
		}
	}
	if t := e.UserAddressTemplate; t != "" && !strings.Contains(t, "{subject}") {
		bad("email.user_address_template", "must contain {subject}, got %q", t)
	}
	if e.UpgradeURL != "" {
		if u, err := url.Parse(e.UpgradeURL); err != nil || u.Scheme == "" || u.Host == "" {
			bad("email.upgrade_url", "must be an absolute URL, got %q", e.UpgradeURL)
		}
	}
	if e.StartTLS == TLSDisabled && e.Username != "" && !loopback(e.SMTPAddr) {
		bad("email.starttls", "\"disabled\" with a username would send the password in clear text; it is only allowed for a loopback smtp_addr, got %q", e.SMTPAddr)
	}
	if e.Password != "" && e.PasswordEnv != "" {
		bad("email", "set only one of password and password_env")
	}
	retries(bad, "email", e.MaxRetries, e.Timeout, e.Backoff, e.MaxBackoff)
}

func (a AnomalyConfig) validate(bad badFunc) {
	if a.Window < 0 || (a.Window > 0 && a.Window.D() < time.Second) {
		bad("anomaly.window", "must be at least 1s, got %s", a.Window)
	}
	if a.Factor < 0 || (a.Factor > 0 && a.Factor <= 1) {
		bad("anomaly.factor", "must be greater than 1, got %g", a.Factor)
	}
	if a.MinRate < 0 {
		bad("anomaly.min_rate", "must be >= 0, got %g", a.MinRate)
	}
	nonNegative(bad, "anomaly.warm_up", a.WarmUp)
	if a.Smoothing < 0 || a.Smoothing > 1 {
		bad("anomaly.smoothing", "must be in (0, 1], got %g", a.Smoothing)
	}
	nonNegative(bad, "anomaly.max_subjects", a.MaxSubjects)
}

func retries(bad badFunc, prefix string, n int, timeout, backoff, maxBackoff Duration) {
	if n < -1 {
		bad(prefix+".max_retries", "must be >= -1 (-1 disables retries), got %d", n)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"timeout", timeout}, {"backoff", backoff}, {"max_backoff", maxBackoff}} {
		if d.v < 0 {
			bad(prefix+"."+d.name, "must be positive, got %s", d.v)
		}
	}
}

func nonNegative(bad badFunc, path string, v int) {
	if v < 0 {
		bad(path, "must be >= 0, got %d", v)
	}
}

// validAddress reports whether s is a bare address ("ops@example.com"),
// without a display name and without anything that could inject a header.
func validAddress(s string) bool {
	if strings.ContainsAny(s, "\r\n<>,") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s
}

// loopback reports whether addr's host is localhost or a loopback IP.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL drops the user info and query of u, where tokens tend to hide.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v Duration, def time.Duration) Duration {
	if v == 0 {
		return Duration(def)
	}
	return v
}

func orStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Duration is a time.Duration that reads and writes as a Go duration
// string ("5s", "1m30s") in JSON and YAML. config.Duration is this type,
// so that durations read alike everywhere in a configuration file.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d as time.Duration formats it.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string such as "5s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as 2s or 1m30s", b)
	}
	*d = Duration(v)
	return nil
}

// Secret is a string that is never printed: fmt, slog and JSON encoding
// show it as "REDACTED". It decodes from a plain JSON string. Code that
// must write a config file back works on the file's bytes, not on a
// decoded Config.
type Secret string

// String returns "REDACTED", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString is String, so that %#v does not print the secret either.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps the secret out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText writes "REDACTED", so that a Config encoded as JSON (by a
// log handler, or an admin endpoint) does not carry the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
