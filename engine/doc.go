// Package engine decides and charges quota requests: tiers, limits over
// fixed and sliding windows, token balances shared by teams, features by
// tier, reservations instead of refusals (max_delay), and load shedding by
// priority. It knows nothing of gRPC, Envoy, Redis or SQL.
//
// One request is checked against every limit that applies to it (tier,
// user override, run-time profile, role, workflow, team) and against its
// token balance, and all of them are charged together, or none is. A
// denial is a Decision, never an error: an error means no decision could
// be made, and the Decision then still names the tier's FailureMode.
//
// Limits are matched by name across tiers and reloads: a tier upgrade keeps
// the usage counted so far, and a reload applies new maxima to it. Team
// limits and a team's shared balance live in the team's own state (key
// "team:<name>"); a request that touches both is charged under both locks.
// With a shared Authority, a member's keys carry the team's hash tag, so
// that one script charges both; a subject that changes team has its state
// moved to the new tag first (StateMover).
//
// A run-time profile (SetProfile) is validated by ValidateProfile against
// the current configuration, the same rules the admin API applies before
// it writes anything. A stored profile that a reload (or an older build)
// made invalid is ignored by Checks but for its tier, logged once per
// subject and reload, and shown by Status, so that it is metered by the
// configured rules instead of failing every Check. A tier change applies
// the new grant in the current period at once: the allowance becomes the
// new grant minus what was spent this period, clamped to [0, grant].
//
// State lives in a power-of-two number of shards picked by a seeded hash,
// each with its own mutex and bounded LRU. Evicted state goes to a Store and
// a miss loads it back; until the save returns, the evicted state stays
// findable in its shard, so eviction never resets usage. A state that is
// idle (no profile, no credits, its grant period over and every window
// rolled to nothing: fresh state would decide the same) is forgotten
// instead when the Store is a Forgetter, as MemoryStore is, and Flush
// sweeps such a Store a little at a time for states that have become idle
// since; the in-memory store thus holds only state with live usage. No I/O, logging or
// event delivery happens under a shard lock; functions whose names end in
// Locked require the lock of the state they touch.
//
// Run's periodic flushes are paced (pace.go): they step a Pacer, which
// pauses the work once it has run 200µs, outside any lock, for at least
// 100µs and until the network has been polled (yield_linux.go waits on a
// timerfd through the runtime's poller), so that a server on one core
// reads and answers the Checks that arrived rather than leaving them
// behind a flush of several milliseconds. The
// Store's Save and the ledger writer step the same Pacer (WithPacer), so
// that all background work pauses together. With GOMAXPROCS above one,
// another processor polls the network meanwhile, and nothing pauses.
//
// A request that does not fit now but would within its tier's MaxDelay (and
// its Deadline) is admitted with a Delay: the reservation is charged at
// once, in the window it falls in. Charge waits the delay out; if its
// context ends first the reservation stays charged, erring toward the
// caller's quota rather than the system's.
//
// Arithmetic is checked: every count, limit, price, cost, grant and credit
// balance lies in [0, MaxQuantity] (2^53−1), which Validate and AddCredits
// enforce, so sums of two never overflow and a Lua script counts them
// exactly. A cost is computed in 128 bits; a request whose units or cost
// would exceed MaxQuantity, or that counts more against a limit than the
// limit's maximum, can never be admitted and is refused with
// ReasonRequestTooLarge, with no RetryAfter.
// An action is known when Rules.Actions prices it or a tier or role lists
// it among its features. A request naming any other action (a typo in a
// route, a name a client chose) follows Rules.UnknownActions: it is refused
// with ReasonUnknownAction and charges nothing, or it is priced and limited
// as a named action; either way Decision.UnknownAction carries the name, so
// that the front end can tell the operator.
//
// An Engine is built from two parts. Options are its wiring (Store,
// Authority, Events, Logger, clock, shards, cache size, durability),
// fixed by New. Rules are what it decides by (tiers, actions, users,
// roles, workflows, teams, alerts, messages, capacity, time zone, window
// mode); Reload validates and compiles new Rules and swaps them in whole,
// and a charge loads the compiled rules once, so a reload in the middle of
// one does not mix old and new rules.
//
// One charge reads top to bottom in charge.go: screen what needs no state;
// acquire the subject's state and its team's (shard.go); plan, that is
// resolve the tier and gather and price the limits that apply (plan.go);
// decide, here (decide.go) or through the Authority (remote.go), which
// releases the locks for its round trip; then record what changed
// (commit.go), release the locks, emit the events, and commit: with
// SyncWrites, save the changed state before Charge returns.
//
// # Settlement
//
// A charge is priced before the upstream answers; Settle corrects it from
// the response, which Envoy's access log reports with the decision id.
// Each action's SettleRule (DefaultSettleRule for a priced action that
// sets none: refund on 5xx and on no response) says which response codes
// refund the charge (and, if asked, the window counts) and which response
// header holds the actual units, from which the request is repriced and
// the difference charged or refunded. A settlement never takes a balance
// below zero (the shortfall is Settled.Owed, recorded and not charged),
// never gives a balance back more than the charge took (credits first,
// then the allowance, and that only within the grant period it was taken
// from), and gives window counts back only while the charged window is
// the current one. An upward adjustment that crosses the balance's alert
// threshold emits EventBalanceLow as a charge would.
//
// Every allowed decision that charged tokens or window counts, and whose
// rule is not Off, is held as pending in a table of Options.PendingSize
// records at most, each for Options.PendingMaxAge at most: the oldest is
// dropped (counted in PendingStats.Evicted) to make room, and what outlives its age is
// dropped too (PendingStats.AgedOut). The table is split in 16 locked
// parts by the id's random bits (its locks are leaves, taken after a
// shard's), holds records in a chunked slab found through an open-address
// index (about 320 bytes a record with its index and queue slots, as
// BenchmarkPendingMemory measures), and
// costs a decision no allocation once grown, unless its rule refunds
// windows (one: their list). Settlement is idempotent per id: the record
// is claimed, applied under the shard locks with checked arithmetic, and
// replaced by a settled mark kept for PendingMaxAge, so that a resent
// entry is SettleDuplicate; an id the table never had is SettleUnmatched,
// and one decided before a record was dropped is SettleAgedOut. An entry
// that comes before the decision's state was flushed settles the state in
// memory, which the next Flush saves as usual.
//
// A Store that is a PendingStore (store/sqlite; a MemoryStore passed in
// Options.Store) keeps the records across restarts: each Flush hands it the
// records that changed with the snapshots, in one call; under SyncWrites
// the record is saved with its charge's snapshot (or, with a Deferrer that
// is a PendingDeferrer, handed over with the snapshots to be committed
// with them: store/durable), and a settlement's mark with its state. RestorePending loads them at start. A crash in batch
// mode loses a charge and its record together. With an Authority that is
// a Settler (store/redis), the Authority records the pending decision with
// the charge and settles it on any replica, and the table is not used.
//
// Time is injected: ChargeAt and StatusAt take it as an argument, and
// Options.Now is the clock of the other methods.
package engine
