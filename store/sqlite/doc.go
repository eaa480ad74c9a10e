// Package sqlite is the durable single-node engine.Store: subject state in
// one SQLite file (modernc.org/sqlite, pure Go) in WAL mode.
//
// Each key keeps the snapshot with the highest version: the upsert only
// replaces a row with a newer one, so batches may arrive in any order.
// A Save appends its snapshots to the table snapshot_log as one row, and
// the newest of each key are upserted into the table snapshots in key
// order by a fold, once every few hundred saves: a subject that many
// flushes save is written to the table once, and a flush writes a few
// pages instead of most of the table's (see snaplog.go). Open folds what
// a process that did not Close left in the log; Close folds the rest.
// Concurrent Save calls are group-committed: while one transaction is being
// written, the calls that arrive queue up and the next of them commits
// them all in one transaction, so under DurabilitySync they share a single
// fsync. No background goroutine is needed for that; the caller that
// finds no commit in progress does the work.
//
// A File is the file's connections: one that makes every write, and a
// pool for reads. The ledger, when it is in the same file (the default
// under --data-dir), writes through the store's File too, so one
// connection writes the file and its page cache stays valid between
// transactions (see File).
//
// Store is an engine.PendingStore: pending decisions and settled ids are
// appended, each transaction's as one row, to the table pending_log (the
// records in a compact binary encoding, see pendingcodec.go), in the
// transaction that saves the snapshots they go with (SaveWith), so a
// graceful restart keeps them and a settlement after it is applied once.
// A row is deleted once its records are all dropped or replaced (rows die
// oldest first, see pendtrack.go); a compaction replays the log and
// writes back only what is live, when the log has grown to twice that
// plus 4 MiB (see pending.go). Rows of the
// table pending, which earlier versions wrote (JSON rows among them), are
// still read, and the first compaction moves them into the log.
//
// Snapshots are stored in a compact binary encoding (see codec.go); rows
// written as JSON by earlier versions are still read, and rewritten in
// the binary form at their next save.
package sqlite
