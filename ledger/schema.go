package ledger

// migrations are the schema, in order; each is a list of statements that
// run in one transaction and is recorded in ledger_migrations. The SQL is
// the common subset of SQLite and PostgreSQL: BIGINT and TEXT columns,
// $n placeholders, INSERT ... ON CONFLICT. The one difference is
// clusteredPK, which each dialect rewrites. Append only: never edit a
// migration that has shipped.
var migrations = [][]string{
	{
		// ledger_blocks holds the hash chain, one row per block of up to
		// 128 appended records (blockRecords; earlier versions wrote one
		// per batch): records is one line per record, "<hash> <prev_hash>
		// <json>\n", in sequence order. A row per block instead of per
		// record keeps the batcher's cost per record to encoding and
		// hashing it.
		// first_ns and last_ns bound the records' times, for retention and
		// for finding a record by its (time-ordered) id.
		`CREATE TABLE ledger_blocks (
			first_seq BIGINT PRIMARY KEY,
			last_seq  BIGINT NOT NULL,
			first_ns  BIGINT NOT NULL,
			last_ns   BIGINT NOT NULL,
			records   TEXT NOT NULL
		)`,
		`CREATE INDEX ledger_blocks_last_ns ON ledger_blocks (last_ns)`,
		// ledger_chain holds the chain's two ends: the last record appended
		// (head) and the last record removed by retention (base), so that
		// Verify can tell pruning from tampering at either end.
		`CREATE TABLE ledger_chain (
			id        BIGINT PRIMARY KEY,
			head_seq  BIGINT NOT NULL,
			head_hash TEXT NOT NULL,
			base_seq  BIGINT NOT NULL,
			base_hash TEXT NOT NULL
		)`,
		`INSERT INTO ledger_chain (id, head_seq, head_hash, base_seq, base_hash) VALUES (1, 0, '', 0, '')`,
		// usage_subject rolls up per subject, team, tier and action, by
		// grain ('hour', 'day', 'month') and period start (Unix seconds, UTC).
		`CREATE TABLE usage_subject (
			grain      TEXT NOT NULL,
			period     BIGINT NOT NULL,
			subject    TEXT NOT NULL,
			team       TEXT NOT NULL,
			tier       TEXT NOT NULL,
			action     TEXT NOT NULL,
			calls      BIGINT NOT NULL,
			units      BIGINT NOT NULL,
			tokens     BIGINT NOT NULL,
			rejections BIGINT NOT NULL,
			PRIMARY KEY (grain, subject, period, team, tier, action)
		)` + clusteredPK,
		`CREATE INDEX usage_subject_period ON usage_subject (grain, period)`,
		// usage_total is usage_subject summed over subjects, so that a
		// team, tier or overall report reads a few rows per period however
		// many subjects there are.
		`CREATE TABLE usage_total (
			grain      TEXT NOT NULL,
			period     BIGINT NOT NULL,
			team       TEXT NOT NULL,
			tier       TEXT NOT NULL,
			action     TEXT NOT NULL,
			calls      BIGINT NOT NULL,
			units      BIGINT NOT NULL,
			tokens     BIGINT NOT NULL,
			rejections BIGINT NOT NULL,
			PRIMARY KEY (grain, period, team, tier, action)
		)` + clusteredPK,
	},
	{
		// rollup_seq is the last record whose usage is in the rollups (the
		// fold's watermark): records are appended without touching the
		// rollups, and FoldRollups adds those after rollup_seq and moves it,
		// in one transaction. Before this migration every append updated
		// the rollups, so they cover the chain up to its head.
		`ALTER TABLE ledger_chain ADD COLUMN rollup_seq BIGINT NOT NULL DEFAULT 0`,
		`UPDATE ledger_chain SET rollup_seq = head_seq`,
	},
	{
		// Settlements (KindSettlement records): the tokens refunded,
		// charged on top, and owed, per row. tokens and units stay the
		// settled figures; these say how they were reached.
		`ALTER TABLE usage_subject ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_subject ADD COLUMN extra BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_subject ADD COLUMN owed BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_total ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_total ADD COLUMN extra BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE usage_total ADD COLUMN owed BIGINT NOT NULL DEFAULT 0`,
	},
}

// clusteredPK marks a table to be stored in its primary key's order: on
// SQLite it becomes WITHOUT ROWID (one B-tree instead of two, for the
// rollups that are upserted on every batch); PostgreSQL has no such
// option and drops it.
const clusteredPK = "/*clustered*/"
