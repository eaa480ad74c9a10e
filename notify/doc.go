// Package notify raises and delivers quotagate's alerts.
//
// A Notifier receives the engine's events (a limit's alert threshold
// reached, a limit breached, a balance running low or exhausted) through
// Emit, which implements engine.Events, and finds anomalies itself: Observe
// counts each subject's requests, and a subject whose count in the current
// window is far above its own moving baseline (an exponentially weighted
// moving average of its past windows) raises an anomaly alert.
//
// At most one alert is sent per kind, subject, limit and window: the engine
// already emits once per window, and the Notifier also remembers recent
// alert keys in a bounded LRU, so that duplicates (after a reload, or from
// state reloaded from the store) are dropped.
//
// Delivery is asynchronous and bounded, so that it never slows a Check.
// Emit and Observe never block: an alert that finds the queue full is
// dropped and counted. Run dispatches each alert to the active channels:
//
//   - webhook: a JSON POST signed with HMAC-SHA256 (SignatureHeader), retried
//     with exponential backoff and jitter, then dead-lettered and counted;
//   - email: SMTP with STARTTLS and AUTH PLAIN; users get the alert's short
//     message (Messages) with the configured upgrade link, operators get every
//     detail;
//   - dashboard: an in-memory ring of recent alerts (Recent, Ack) and a live
//     feed (Subscribe) for the admin server's dashboard.
//
// Counters are available through Stats. Secrets (the webhook key, the SMTP
// password) are never logged or put in errors, and WebhookConfig and
// EmailConfig print, log and encode them as REDACTED.
//
// Config is plain options (time.Duration, string secrets): the command's
// wiring builds it from the configuration file's quota_manager.alerts
// block. Config.Validate reports engine.FieldErrors with paths relative to
// Config (webhook.url), which the wiring places in the file.
package notify
