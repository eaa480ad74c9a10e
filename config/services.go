package config

import (
	"math"
	"strings"

	"github.com/quotagate/quotagate/notify"
)

// LedgerConfig is the ledger block: where the usage and audit ledger lives,
// how long it keeps records and the token prices of the billing export.
type LedgerConfig struct {
	// DSN is the ledger's database: a SQLite file path or a postgres://
	// URL. Empty means ledger.db in the server's data directory when it has
	// one (--data-dir), and no ledger otherwise. --ledger overrides it.
	DSN string `json:"dsn"`
	// RetentionDays is how many days of records (and hourly rollups) are
	// kept; zero keeps everything. Day and month rollups are kept for good.
	RetentionDays int `json:"retention_days"`
	// Prices are the price of one token, per tier, for the billing export
	// (quotagate usage --prices).
	Prices map[string]float64 `json:"prices"`
	// QueueSize bounds the records waiting to be written; a full queue
	// summarises the overflow into spill records. Zero means 65 536.
	QueueSize int `json:"queue_size"`
}

// Notify returns the alerts block as the notifier's configuration. It is
// valid when the File is.
func (a Alerts) Notify() notify.Config {
	channels := make([]notify.Channel, 0, len(a.Channels))
	for _, name := range a.Channels {
		if c, err := notify.ParseChannel(name); err == nil {
			channels = append(channels, c)
		}
	}
	return notify.Config{
		Enabled: a.Enabled, ThresholdPercentage: a.ThresholdPercentage, Channels: channels,
		QueueSize: a.QueueSize, DedupSize: a.DedupSize,
		Webhook: a.Webhook, Email: a.Email, Dashboard: a.Dashboard, Anomaly: a.Anomaly, Messages: a.Messages,
	}
}

// validateNotify checks the channel and anomaly settings of the alerts
// block; the seed's fields are checked by validateAlerts.
func (f *File) validateNotify(p *problems) {
	const path = "quota_manager.alerts"
	err := f.QuotaManager.Alerts.Notify().Validate()
	for _, e := range flatten(err) {
		msg := strings.TrimPrefix(e.Error(), "notify: ")
		field, problem, ok := strings.Cut(msg, ": ")
		if !ok {
			p.addf(path, "%s", msg)
			continue
		}
		if field == "threshold_percentage" || strings.HasPrefix(field, "channels") {
			continue // reported by validateAlerts in the config's words
		}
		p.addf(path+"."+field, "%s", problem)
	}
}

// validateAdmin checks the admin block.
func (f *File) validateAdmin(p *problems) {
	for _, e := range flatten(f.Admin.Validate()) {
		// "admin: invalid config: admin.tokens[0].sha256: problem"
		msg := e.Error()
		if i := strings.Index(msg, "admin."); i >= 0 {
			msg = msg[i:]
		}
		field, problem, ok := strings.Cut(msg, ": ")
		if !ok {
			field, problem = "admin", msg
		}
		p.addf(field, "%s", problem)
	}
}

// validateLedger checks the ledger block.
func (f *File) validateLedger(p *problems) {
	l := &f.Ledger
	if l.RetentionDays < 0 {
		p.addf("ledger.retention_days", "must be >= 0 (0 keeps everything), got %d", l.RetentionDays)
	}
	if l.QueueSize < 0 {
		p.addf("ledger.queue_size", "must be >= 0 (0 means 65536), got %d", l.QueueSize)
	}
	tiers := sortedKeys(f.QuotaManager.Tiers)
	for _, tier := range sortedKeys(l.Prices) {
		path := field("ledger.prices", tier)
		if !has(f.QuotaManager.Tiers, tier) {
			p.addf(path, "unknown tier %q%s", tier, oneOf(tier, tiers))
		}
		if v := l.Prices[tier]; v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			p.addf(path, "must be a price >= 0 per token, got %v", v)
		}
	}
}

// flatten returns the errors joined in err (by errors.Join), or err alone.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}
