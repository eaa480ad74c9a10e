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
// State lives in a power-of-two number of shards picked by a seeded hash,
// each with its own mutex and bounded LRU. Evicted state goes to a Store and
// a miss loads it back; until the save returns, the evicted state stays
// findable in its shard, so eviction never resets usage. No I/O, logging or
// event delivery happens under a shard lock; functions whose names end in
// Locked require the lock of the state they touch.
//
// A request that does not fit now but would within its tier's MaxDelay (and
// its Deadline) is admitted with a Delay: the reservation is charged at
// once, in the window it falls in. Charge waits the delay out; if its
// context ends first the reservation stays charged, erring toward the
// caller's quota rather than the system's.
//
// Time is injected: ChargeAt and StatusAt take it as an argument, and
// Config.Now is the clock of the other methods.
package engine
