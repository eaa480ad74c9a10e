package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/quotagate/quotagate/engine"
)

// Sentinel errors callers branch on.
var (
	// ErrRunning is returned by a second concurrent call to Run.
	ErrRunning = errors.New("notify: already running")
	// ErrUnknownAlert is returned by Ack for an id that is not (or no
	// longer) in the dashboard feed.
	ErrUnknownAlert = errors.New("notify: unknown alert")
)

// Options are the dependencies of a Notifier. The zero value of each field
// means its documented default.
type Options struct {
	// Logger receives delivery failures (never secrets). Nil discards.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// HTTPClient posts webhooks. Nil means a client that does not follow
	// redirects; per-attempt timeouts come from webhook.timeout.
	HTTPClient *http.Client
	// Getenv resolves webhook.secret_env and email.password_env, once, in
	// New. Nil means those settings cannot be used.
	Getenv func(string) string
	// SMTPTLS is the TLS configuration for STARTTLS. Nil means the system
	// roots, with the server name taken from email.smtp_addr.
	SMTPTLS *tls.Config
}

// Notifier turns engine events and anomalies into alerts, deduplicates
// them, and delivers them asynchronously to the configured channels. It
// implements engine.Events. Emit and Observe never block; delivery happens
// in Run. It is safe for concurrent use.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	enabled bool

	queue    chan Alert
	dedup    *lru.Cache[string, struct{}]
	detector *detector // nil when anomaly detection is off

	dashboard *feed    // nil when the dashboard channel is inactive
	hook      *webhook // nil when the webhook channel is inactive
	mail      *mailer  // nil when the email channel is inactive
	workers   []*worker

	dashStats channelCounters
	received  atomic.Uint64
	dropped   atomic.Uint64
	dupes     atomic.Uint64
	anomalies atomic.Uint64

	running   atomic.Bool
	closed    atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	finish    sync.Once // closes the workers' queues after Close
}

var _ engine.Events = (*Notifier)(nil)

// New returns a Notifier for cfg. It validates cfg, resolves secrets from
// the environment through opts.Getenv, and starts no goroutines: call Run.
// A channel that is listed but not configured is logged and left inactive.
func New(cfg Config, opts Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Notifier{
		cfg:     cfg,
		log:     opts.Logger,
		now:     opts.Now,
		enabled: cfg.Enabled,
		queue:   make(chan Alert, cfg.QueueSize),
		done:    make(chan struct{}),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	dedup, err := lru.New[string, struct{}](cfg.DedupSize)
	if err != nil {
		return nil, fmt.Errorf("notify: dedup_size %d: %w", cfg.DedupSize, err)
	}
	n.dedup = dedup
	if cfg.Anomaly.Enabled {
		n.detector = newDetector(cfg.Anomaly)
	}
	for _, ch := range slices.Compact(slices.Sorted(slices.Values(cfg.Channels))) {
		if err := n.setUp(ch, opts); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// setUp activates channel ch, or logs why it stays inactive.
func (n *Notifier) setUp(ch Channel, opts Options) error {
	switch ch {
	case ChannelDashboard:
		n.dashboard = newFeed(n.cfg.Dashboard.Size, &n.dashStats)
	case ChannelWebhook:
		c := n.cfg.Webhook
		if c.URL == "" {
			n.log.Warn("notify: the webhook channel is listed but webhook.url is not set; no webhooks will be sent")
			return nil
		}
		secret, err := resolveSecret("webhook.secret_env", c.Secret, c.SecretEnv, opts.Getenv)
		if err != nil {
			return err
		}
		client := opts.HTTPClient
		if client == nil {
			client = defaultHTTPClient()
		}
		n.hook = &webhook{url: c.URL, secret: []byte(secret), client: client, now: n.now}
		n.workers = append(n.workers, n.newWorker(ch, c.MaxRetries, c.Timeout, c.Backoff, c.MaxBackoff))
	case ChannelEmail:
		c := n.cfg.Email
		if c.SMTPAddr == "" {
			n.log.Warn("notify: the email channel is listed but email.smtp_addr is not set; no emails will be sent")
			return nil
		}
		password, err := resolveSecret("email.password_env", c.Password, c.PasswordEnv, opts.Getenv)
		if err != nil {
			return err
		}
		if n.mail, err = newMailer(c, password, opts.SMTPTLS, n.now); err != nil {
			return err
		}
		if len(c.ToOperators) == 0 && len(c.UserAddresses) == 0 && c.UserAddressTemplate == "" {
			n.log.Warn("notify: the email channel has no recipients; set email.to_operators, email.user_addresses or email.user_address_template")
		}
		n.workers = append(n.workers, n.newWorker(ch, c.MaxRetries, c.Timeout, c.Backoff, c.MaxBackoff))
	}
	return nil
}

func (n *Notifier) newWorker(ch Channel, retries int, timeout, backoff, maxBackoff time.Duration) *worker {
	return &worker{
		channel: ch,
		queue:   make(chan delivery, n.cfg.QueueSize),
		policy:  retryPolicy{maxRetries: retries, backoff: backoff, maxBackoff: maxBackoff},
		timeout: timeout,
		log:     n.log,
	}
}

// resolveSecret returns the literal secret, or the value of the named
// environment variable. The error names the variable, never its value.
func resolveSecret(path, literal, env string, getenv func(string) string) (string, error) {
	if env == "" {
		return literal, nil
	}
	if getenv == nil {
		return "", fmt.Errorf("notify: %s: no environment was passed to notify.New (Options.Getenv)", path)
	}
	v := getenv(env)
	if v == "" {
		return "", fmt.Errorf("notify: %s: environment variable %s is empty or unset; set it, or remove %s", path, env, path)
	}
	return v, nil
}

// Emit queues an alert for ev. It never blocks: a duplicate (same kind,
// subject, limit and window as an alert already queued) is counted and
// dropped, and so is an alert that finds the queue full.
func (n *Notifier) Emit(ev engine.Event) {
	if !n.enabled || n.closed.Load() {
		return
	}
	a, ok := alertFromEvent(ev)
	if !ok {
		return
	}
	if a.Time.IsZero() {
		a.Time = n.now()
	}
	n.enqueue(a)
}

// Observe counts one request by subject for the anomaly detector, at now.
// It is cheap and never blocks; when the request makes the subject's
// current window anomalous, an anomaly alert is queued, at most once per
// subject and window. It does nothing unless anomaly.enabled is set.
func (n *Notifier) Observe(subject string, tier engine.Tier, now time.Time) {
	if n.detector == nil || !n.enabled || n.closed.Load() {
		return
	}
	an, found := n.detector.observe(subject, now)
	if !found {
		return
	}
	n.anomalies.Add(1)
	n.enqueue(anomalyAlert(subject, tier, now, an))
}

// enqueue deduplicates a and queues it without blocking.
func (n *Notifier) enqueue(a Alert) {
	n.received.Add(1)
	key := a.dedupKey()
	if seen, _ := n.dedup.ContainsOrAdd(key, struct{}{}); seen {
		n.dupes.Add(1)
		return
	}
	select {
	case n.queue <- a:
	default:
		// Forget the key, so that a later copy of this alert may get through.
		n.dedup.Remove(key)
		n.dropped.Add(1)
	}
}

// Run dispatches queued alerts to the channels and delivers them, until
// ctx is done or Close is called. After Close, Run first delivers what is
// already queued (with retries); when ctx is done it abandons what is
// left, counting it as dropped. It returns nil in both cases, and
// ErrRunning if Run is already running.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer n.running.Store(false)
	var wg sync.WaitGroup
	for _, w := range n.workers {
		wg.Go(func() { w.run(ctx) })
	}
	defer wg.Wait()
	for {
		select {
		case a := <-n.queue:
			n.dispatch(a)
		case <-ctx.Done():
			n.dropped.Add(uint64(len(n.queue)))
			return nil
		case <-n.done:
			for len(n.queue) > 0 {
				n.dispatch(<-n.queue)
			}
			n.finish.Do(func() {
				for _, w := range n.workers {
					close(w.queue)
				}
			})
			return nil
		}
	}
}

// dispatch gives a its id and message and hands it to every active
// channel.
func (n *Notifier) dispatch(a Alert) {
	a.Message = a.message(n.cfg.Messages)
	if id, err := uuid.NewV7(); err == nil {
		a.ID = id
	} else {
		n.log.Error("notify: alert id", "err", err)
	}
	if n.dashboard != nil {
		n.dashboard.publish(a)
	}
	for _, w := range n.workers {
		switch w.channel {
		case ChannelWebhook:
			n.dispatchWebhook(w, a)
		case ChannelEmail:
			n.dispatchEmail(w, a)
		}
	}
}

func (n *Notifier) dispatchWebhook(w *worker, a Alert) {
	body, err := json.Marshal(a)
	if err != nil {
		w.stats.deadLettered.Add(1)
		n.log.Error("notify: webhook payload", "alert_id", a.ID.String(), "err", err)
		return
	}
	id := a.ID.String()
	w.offer(delivery{alertID: a.ID, send: func(ctx context.Context) error {
		return n.hook.send(ctx, id, body)
	}})
}

func (n *Notifier) dispatchEmail(w *worker, a Alert) {
	msgs, err := n.mail.messages(a)
	if err != nil {
		w.stats.deadLettered.Add(1)
		n.log.Error("notify: email template", "alert_id", a.ID.String(), "err", err)
		return
	}
	for _, m := range msgs {
		w.offer(delivery{alertID: a.ID, send: func(ctx context.Context) error {
			return n.mail.send(ctx, m)
		}})
	}
}

// Close stops Emit and Observe from queuing alerts and tells Run to
// deliver what is queued and return. It is idempotent and does not wait.
func (n *Notifier) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.done)
	})
	return nil
}

// Subscribe returns a channel that receives every alert published to the
// dashboard from now on, until ctx is done, when it is closed. A
// subscriber that falls more than 64 alerts behind misses alerts rather
// than slowing delivery. Without an active dashboard channel the returned
// channel is closed when ctx is done and receives nothing.
func (n *Notifier) Subscribe(ctx context.Context) <-chan Alert {
	if n.dashboard == nil {
		ch := make(chan Alert)
		context.AfterFunc(ctx, func() { close(ch) })
		return ch
	}
	return n.dashboard.subscribe(ctx)
}

// Recent returns up to limit of the dashboard's most recent alerts, newest
// first; limit <= 0 means all that are kept (dashboard.size).
func (n *Notifier) Recent(limit int) []Alert {
	if n.dashboard == nil {
		return nil
	}
	return n.dashboard.recent(limit)
}

// Ack marks the dashboard alert with id acknowledged. Acknowledging twice
// keeps the first time. It returns ErrUnknownAlert for an id that is not
// in the feed.
func (n *Notifier) Ack(id uuid.UUID) error {
	if n.dashboard == nil || !n.dashboard.ack(id, n.now()) {
		return fmt.Errorf("%w: %s", ErrUnknownAlert, id)
	}
	return nil
}
