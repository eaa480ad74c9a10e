// Package durable owns what makes quotagate's state durable: it opens the
// state store (memory, store/sqlite or store/redis), the ledger and the
// ledger writer from one set of Options (Open), and, in durability sync,
// commits each decision's state together with its ledger record
// (Committer).
//
// # Durability modes
//
// Under a data directory the state and the ledger share DIR/ledger.db, so
// that durability sync commits each charge and its ledger record in one
// transaction before the Check is answered: after a crash, the balances
// and the ledger agree exactly. With the ledger elsewhere (a separate
// file, PostgreSQL) sync makes two commits, the state's then the
// record's, and a crash between them can leave the charges of the Checks
// in flight without their records. In batch mode, a crash loses at most
// one flush interval of state and of ledger.
//
// # The commit protocol
//
// In sync mode with one file, the Committer is both the engine's Store and
// its Deferrer (engine.Options.Deferrer). The data goes down and comes back
// up once:
//
//  1. engine.Charge decides, snapshots the state it changed and, still
//     holding the state's lock, hands the snapshots to Committer.Defer;
//     it returns them in Decision.Unsaved instead of saving them.
//  2. The caller (the ext_authz Observe hook in cmd/quotagate) builds the
//     decision's ledger record and calls Committer.Commit with
//     Decision.Unsaved and the record: one transaction, group-committed
//     with the other Checks' (sqlite.Store.SaveWith with
//     ledger.Ledger.AppendTx), before the Check is answered.
//
// Every decision whose snapshots were deferred must be committed, with or
// without a record: until then its snapshots block the later saves of
// their keys.
//
// # Settlement
//
// The Committer is also an engine.PendingStore and PendingDeferrer. A
// decision held for settlement hands its pending record over with its
// snapshots (DeferPending), and Commit writes the record in the same
// transaction (sqlite.Store.PendingTx), so a crash keeps a charge, its
// ledger record and its pending record together, or none of them. A
// settlement does the same: engine.Settle defers the state it changed with
// the decision's settled mark and returns them in Settled.Unsaved, and the
// caller (cmd/quotagate's settler) commits them with the settlement's
// ledger record. Pending records that the engine flushes, and those of a
// failed commit, go through SavePending, ordered as Save is.
//
// # Ordering
//
// Every save of a key is ordered by the snapshots' versions, whoever makes
// it, so that the file never holds a charge whose record it lacks:
//
//   - Two decisions on one key commit in the order of their versions: the
//     later snapshot (which includes the earlier charge) waits for the
//     earlier decision's commit. Defer runs under the engine's lock of the
//     key, so the order the Committer sees is the order of the charges.
//   - A save the engine makes itself (a periodic flush, an eviction, a
//     flush of an admin change) waits for every deferred snapshot of its
//     keys with a version up to its own. This closes the gap the earlier
//     context-slot design left, where such a save could write a charge
//     before that charge's record.
//   - Until it is committed, a deferred snapshot is what Load returns for
//     its key, so an eviction never reads older state back.
//   - A failed commit keeps its snapshots; Load returns them, and every
//     later save or commit carries them until one succeeds (Close tries a
//     last time). The caller then queues the record through the ledger
//     writer, as in batch mode.
//
// What remains: a decision holds the later saves of its keys until it is
// committed, so a reservation (a Decision with a Delay, which Charge waits
// out before the record can be built) holds them for up to its tier's
// max_delay; the engine's flush waits with them. And a save of an older
// version than a deferred one does not wait (an eviction's snapshot taken
// before the charge): it cannot hold that charge.
package durable
