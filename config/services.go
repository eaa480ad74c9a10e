package config

import "math"

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
