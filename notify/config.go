package notify

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// Config configures a Notifier; the wiring builds it from the
// configuration file's quota_manager.alerts block. The zero value of every
// optional field means its documented default. A Config must not be changed
// after it is passed to New.
type Config struct {
	// Enabled turns alerting on. When false, Emit and Observe do nothing.
	Enabled bool
	// ThresholdPercentage is the usage percentage of a limit at which the
	// engine emits a threshold event (engine.AlertConfig); the Notifier
	// only validates it. Zero means 90.
	ThresholdPercentage int
	// Channels lists where alerts go: webhook, email, dashboard.
	// A listed channel whose settings are missing (an email channel with no
	// smtp_addr) is inactive, and New logs a warning saying so.
	Channels []Channel
	// QueueSize bounds the alerts waiting for delivery, both in front of the
	// dispatcher and in front of each channel. Zero means 1024.
	QueueSize int
	// DedupSize bounds how many recent alert keys (kind, subject, limit and
	// window) are remembered for deduplication. Zero means 100 000.
	DedupSize int

	Webhook   WebhookConfig
	Email     EmailConfig
	Dashboard DashboardConfig
	Anomaly   AnomalyConfig
	// Messages overrides the texts of alerts. Empty fields take the
	// defaults documented on Messages.
	Messages Messages
}

// WebhookConfig configures the webhook channel: each alert is POSTed as JSON,
// signed with HMAC-SHA256.
type WebhookConfig struct {
	// URL is the http or https endpoint. Empty makes the channel inactive.
	URL string
	// Secret is the HMAC key. The wiring passes the file's secret as is;
	// prefer SecretEnv, or an encrypted config file.
	Secret string
	// SecretEnv names an environment variable holding the HMAC key. It is
	// resolved once, in New, through Options.Getenv.
	SecretEnv string
	// MaxRetries is how many times a failed delivery is retried before the
	// alert is dead-lettered. Zero means 3; -1 means never retry.
	MaxRetries int
	// Timeout bounds one delivery attempt. Zero means 5s.
	Timeout time.Duration
	// Backoff is the wait before the first retry; it doubles on each retry,
	// with jitter, up to MaxBackoff. Zero means 500ms.
	Backoff time.Duration
	// MaxBackoff caps the wait between retries. Zero means 30s.
	MaxBackoff time.Duration
}

// EmailConfig configures the email channel: SMTP with STARTTLS and AUTH
// PLAIN. Users get the user template, operators the operator template.
type EmailConfig struct {
	// SMTPAddr is the server's host:port. Empty makes the channel inactive.
	SMTPAddr string
	// StartTLS is "required" (the default) or "disabled". Disabled sends in
	// clear text and is only for a relay on loopback.
	StartTLS TLSMode
	// Username and Password authenticate with AUTH PLAIN; an empty Username
	// means no authentication. PasswordEnv names an environment variable
	// holding the password, resolved once in New.
	Username    string
	Password    string
	PasswordEnv string
	// From is the sender address. Required when SMTPAddr is set.
	From string
	// ToOperators receive every alert through the operator template.
	ToOperators []string
	// UserAddresses maps a subject id to the user's address.
	UserAddresses map[string]string
	// UserAddressTemplate builds a user's address for subjects not in
	// UserAddresses: "{subject}" is replaced by the subject id, as in
	// "{subject}@users.example.com". Empty means only UserAddresses.
	UserAddressTemplate string
	// UpgradeURL is the upgrade link offered in user emails; empty means none.
	UpgradeURL string
	// MaxRetries, Timeout, Backoff and MaxBackoff are as for the webhook.
	MaxRetries int
	Timeout    time.Duration
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DashboardConfig configures the in-memory dashboard feed.
type DashboardConfig struct {
	// Size is how many recent alerts the feed keeps. Zero means 1000.
	Size int
}

// AnomalyConfig configures the anomaly detector: a subject whose request
// count in the current window exceeds Factor times its own moving baseline
// (an exponentially weighted moving average of its past windows) is
// reported, once per subject and window.
type AnomalyConfig struct {
	// Enabled turns the detector on; Observe does nothing otherwise.
	Enabled bool
	// Window is the length of the counting window, aligned to the Unix
	// epoch. Zero means 1m.
	Window time.Duration
	// Factor is how many times the baseline a window's count must exceed.
	// Zero means 5.
	Factor float64
	// MinRate is the rate, in requests per second, below which nothing is
	// reported however far above its baseline. Zero means 1.
	MinRate float64
	// WarmUp is how many windows of history a subject needs before it can
	// be reported. Zero means 5.
	WarmUp int
	// Smoothing is the weight of the newest window in the baseline, in
	// (0, 1]. Zero means 0.2.
	Smoothing float64
	// MaxSubjects bounds how many subjects' baselines are kept (an LRU).
	// Zero means 100 000.
	MaxSubjects int
}

// Messages are the texts of alerts. Empty fields take the defaults.
type Messages struct {
	// Warning is a format with one %s for the period adjective; it defaults
	// to "Approaching %s limit." ("Approaching daily limit.").
	Warning string
	// Exceeded defaults to "Quota exceeded. Upgrade your plan or wait for
	// the reset."
	Exceeded string
	// BalanceLow defaults to "Your token balance is running low."
	BalanceLow string
	// InsufficientBalance defaults to "Insufficient token balance. Upgrade
	// your plan or add credits."
	InsufficientBalance string
	// Anomaly defaults to "Unusually high request rate."
	Anomaly string
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

// Validate reports every invalid field of c, joined with errors.Join: each
// is a *engine.FieldError, with its path relative to c (webhook.url) and the
// offending value, wrapped as "notify: path: problem". Secrets are never
// included.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify: %w", &engine.FieldError{Path: path, Problem: fmt.Sprintf(format, args...)}))
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
	if a.Window < 0 || (a.Window > 0 && a.Window < time.Second) {
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

func retries(bad badFunc, prefix string, n int, timeout, backoff, maxBackoff time.Duration) {
	if n < -1 {
		bad(prefix+".max_retries", "must be >= -1 (-1 disables retries), got %d", n)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
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

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func orStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
