// Package ledger is quotagate's append-only usage and audit log: one
// record per charge and per rejection (keyed by the decision's UUIDv7),
// one per administrative change, with usage rollups for reports and
// billing.
//
// # Storage
//
// A Ledger lives in SQLite (a file path, the single-node default) or in
// PostgreSQL (a postgres:// DSN, for several replicas). Both run the same
// SQL and the same migrations.
//
// # Off the hot path
//
// The Check path hands records to a Writer, whose Append only queues. Run
// writes the queue in batches: each batch is one transaction that stores
// the records as blocks of up to 128 (a block is a row of chained lines,
// so a record costs its encoding and hash rather than a row and its
// indexes; SQLite keeps the lines S2-compressed, about four times smaller,
// see pack.go). The batches'
// usage is summed in memory and folded into the rollups every
// RollupInterval (see Rollups below). Under durability "sync", AppendWait
// returns once the record is committed; concurrent calls share one
// transaction. When the queue is full, Append does not block and does not
// drop: it folds the record into a spill summary per subject, team, tier,
// action, balance owner and hour, which the next batch writes as one
// KindSpill record with the counts, units and tokens it stands for. Usage
// totals and charged tokens per owner therefore still add up; only the
// individual decisions' detail is lost, and that loss is counted
// (WriterStats.Overflowed) and logged.
//
// # Tamper evidence
//
// Records form a hash chain: each carries SHA-256 over the previous
// record's hash and its own content. The chain's head and base (the last
// record removed by retention) are kept in their own row, so Verify can
// name the first record that was altered or removed, at either end or in
// the middle. Someone able to rewrite the whole chain and its head can
// still forge it; anchor the head elsewhere for that.
//
// # Reports
//
// Usage and Billing read rollups kept per hour, day and month (UTC),
// per subject and summed over subjects, so that a report's cost depends
// on the number of periods, not of subjects.
//
// # Rollups
//
// Appending does not touch the rollups: a rollup row per subject, period
// and grain costs more to upsert than a record costs to append, and with
// thousands of active subjects nearly every record of a batch is a row of
// its own. FoldRollups adds the records appended since the last fold and
// moves a watermark (the last record folded, stored with the chain's
// ends) in the same transaction. A Writer folds every RollupInterval and
// on Flush, Close folds, and Usage, Billing and Prune fold first, so
// reports count every record appended. A fold uses the sums Append kept
// in memory when they cover exactly the records after the watermark, and
// otherwise (after a crash or a restart, when another process or AppendTx
// appended in between) reads those records back from the chain. Either
// way each record is folded exactly once.
package ledger
