// Package redis keeps quotagate's shared state in Redis, so that several
// replicas enforce one set of quotas. Open reaches one server
// (Options.Addr), a Redis Cluster (Options.ClusterAddrs, through go-redis's
// ClusterClient) or a primary that Sentinels watch (Options.SentinelMaster
// and SentinelAddrs, through its FailoverClient); the scripts, keys and
// guarantees below are the same on all three.
//
// Store implements engine.Authority: every Check that the engine's local
// cache cannot refuse runs one Lua script that checks every window counter
// of the request and the balance, then charges all of them or none. The
// script is loaded once and run with EVALSHA; a server that answers
// NOSCRIPT (after a restart or SCRIPT FLUSH) gets it again with EVAL.
// The script reads each owner's state with one HMGET and writes what
// changed with one HSET, and takes its arguments as one MessagePack value
// that Redis's bundled cmsgpack decodes: in Redis, a Lua table or a number
// parsed from text costs more than a command, so the script is built to
// make few of either.
//
// # Batching
//
// The scripts of concurrent Checks go out together in one pipeline
// ("natural batching"): while a pipeline is in flight (Options.Pipelines,
// one by default), the scripts that arrive wait, and the first of them to
// be woken sends them all when it returns. The caller about to send a
// pipeline first yields its processor once, so the Checks already running
// join it. Nothing waits on a timer, so a lone Check is sent at once;
// under load the system calls and wake-ups of both sides are shared by a
// whole batch (about 14 scripts a pipeline in the load benchmark, against
// 1.8 without the yield). Each script is still its own
// atomic EVALSHA, so batching changes no outcome. Deadlines stay per
// Check: a caller whose deadline passes returns an error at once (the
// pipeline runs on a goroutine of its own, so its leader waits under its
// deadline like the others). A pipeline that fails gives each of its
// callers an error.
//
// On a Redis Cluster, go-redis splits a pipeline per node and sends the
// parts at once, so a batch still costs one round trip per node it
// touches, and one node's failure fails only its own commands (and marks
// the store degraded). With Options.WaitReplicas the batcher groups the
// calls by primary itself, so each group's pipeline can end with WAIT on
// its own node. A node that answers NOSCRIPT (restarted, or a replica just
// promoted) gets the script again with EVAL: on every node, as each answers
// for itself.
//
// # Keys
//
// Each owner (a subject, or "team:<name>") has one state hash
// "<prefix>:{<tag>}:o:<owner>" holding its window counters and its
// balance. Limit L's counter is the fields "s:L" (the start of the window
// it counts, unix ms), "n:L" (the count) and, for a sliding window, "p:L"
// (the count of the window before). The script tells a rolled window by
// its start and resets the fields in place, so they never pile up. The
// balance is "p" (grant period start), "a" (allowance left of it), "g"
// (the grant "a" was measured against: a tier change mid-period sets "a"
// to the new grant minus what was spent, clamped to [0, grant]) and "c"
// (credits). A hash without a balance expires when its longest window
// ends (a sliding one a window later, since it weighs in the next
// window's estimate), plus Options.ExpiryMargin for clock skew between
// replicas; "x" holds that time, so the expiry is only moved when it
// grows. A hash with a balance never expires, as credits must not, and
// one that gains a balance loses its expiry. The fields of a limit that a
// reload renamed or removed stay in such a hash (three short fields per
// limit name ever used); they are never read again. Snapshots (engine.Store) are
// hashes "<prefix>:{<key>}:s", whose field "p" holds the shared profile
// (engine.ProfileStore), and never expire.
//
// The hash tag {<tag>} is what Redis Cluster hashes, so every key of one
// request lives in one slot and the script touches one slot: never
// CROSSSLOT. The tag is the subject id, except for a member of a team that
// keeps state (team limits or a shared balance): then it is "team:<name>"
// for the member's keys and the team's alike, because a member's request
// charges both. The cost is that a large team's keys share one slot (one
// node). The profile epoch "<prefix>:profiles" is one key on one node,
// read once per ProfileTTL per replica; profiles and snapshots live under
// the subject's own tag, so their reads and writes spread over the nodes.
//
// # Moving between teams
//
// When a subject joins a team that keeps state, leaves one, or changes
// team (SetProfile through the admin API, or a reload), its own hash must
// move from the old tag to the new, and in a cluster the two lie in
// different slots, where no one script can reach both. The engine calls
// MoveState before the change takes effect (and refuses the change, with
// nothing changed, when the move fails), which moves it in two scripts,
// each on one slot:
//
//  1. Freeze: the old hash gets a forwarding marker "f" (the new tag) and
//     a move name "g", and expires after an hour. The charge and credit
//     scripts refuse a hash with a marker and change nothing (ErrMoved):
//     the tier's failure mode applies to that one Check, and the Store
//     makes its replica re-read every profile before its next request,
//     so a replica that had the old team learns the new one at once.
//  2. Merge: the old hash's fields are added to the new hash once, which
//     records the move's name in "m": counters of the same window are
//     summed, of different windows the later one is kept, the balance is
//     the old hash's (unless the new one holds a later grant period). A
//     new hash that is itself a marker (the subject moved away from this
//     tag before and now comes back) is emptied first.
//
// Both steps are idempotent: a move that failed half-way, or that every
// replica runs on a reload, is finished by running it again (a frozen hash
// keeps its fields and name for the hour), and a marker that points
// elsewhere is followed. Usage charged to the old hash before the freeze
// is merged; after it, nothing is charged there. So no usage is lost or
// counted twice. What is not covered: a subject whose team comes with the
// request (Request.Team) rather than its profile or the configuration
// moves nothing; and a reload moves static users and members only (a
// subject whose profile names its team keeps it, and is not moved).
//
// # Failures
//
// Every call has a deadline (Options.Timeout, 50ms by default) and is never
// retried: the client is built with MaxRetries -1, and a cluster client
// with MaxRedirects -1, so a MOVED or ASK reply (a slot migrating, or a
// failover the client has not seen yet; the script did not run) fails the
// call instead of following it, as a network error on the same path must
// never resend a charge. A script that timed out may or may not have run,
// so across replicas the error is bounded by one request per timed-out
// call, and it errs toward the caller (an unknown outcome is reported as
// an error and the tier's failure mode applies; the charge is not
// repeated). go-redis reconnects on its own; Healthy reports whether the
// last call succeeded, for the health endpoint, and Ping asks every
// primary of a cluster. A request that
// a fail-open tier admits during an outage is counted in the replica's
// cached counters (not in its balance), so a subject that fills a window
// meanwhile is refused from the cache: an outage admits at most each limit
// once per replica on top of what Redis counted. Such a window asks Redis
// at most once a second whether it is really full (refused from the cache
// while the ask fails), and the first answer replaces the cached counts:
// within a second of the outage's end the subject is decided by Redis's
// counts again, and nothing is charged twice.
//
// # Failovers
//
// When a cluster primary dies, the Checks of its slots fail (the failure
// mode applies, the store reports degraded, no Check waits past the
// deadline) until its replica is promoted (after cluster-node-timeout and
// an election; about 2s with a 1s timeout) and the client has re-read the
// slot map, which it does after every failed call and once a second. The
// other shards serve throughout. Under Sentinel, all Checks fail until the
// Sentinels promote the replica (down-after-milliseconds plus an election)
// and the client follows them. Then exactness resumes by itself.
//
// Redis replicates asynchronously, so a failover loses the writes the
// replica had not received: the charges of the replication lag, admitted
// but no longer counted (over-admission). Options.WaitReplicas closes that
// gap: every pipeline of charges ends with WAIT for that many replicas,
// and a charge is reported only once they hold it; one they do not
// acknowledge within the deadline fails with an unknown outcome. The
// bounds, which the failover tests measure (3 primaries with a replica
// each, and 1 primary, 1 replica and 3 Sentinels; a primary killed under
// 12 concurrent Checks):
//
//   - over-admission: 0 with WaitReplicas >= 1 (a promoted replica holds
//     every admitted charge). Without, the charges acknowledged within the
//     replication lag at the moment of the kill, and Redis bounds that lag
//     when the primaries run with min-replicas-to-write 1 and
//     min-replicas-max-lag L: a primary refuses writes (the failure mode
//     applies) once its replica's last acknowledgement, sent every second,
//     is more than L seconds old. Over-admission is then at most the
//     charges of the last L+1 seconds before the primary died; the tests
//     set L = 1 and assert it. On loopback it is 0 to a few charges, but a
//     replica starved of CPU lags further (hundreds of charges on a loaded
//     2-core test host). Without min-replicas settings nothing bounds it.
//   - under-admission: at most the Checks that failed with an unknown
//     outcome (a charge that ran, or was not acknowledged by a replica in
//     time, and was refused by a fail-closed tier): each such Check costs
//     its subject at most one request's worth.
//   - after the failover: 0 and 0, with no restart; a replica is needed
//     for WAIT again, so with WaitReplicas every charge of a shard fails
//     until its promoted primary has a replica of its own.
//
// # Profiles
//
// Store implements engine.ProfileStore, so subjects' run-time profiles
// (tier, roles, team, limits) are shared: SetProfile writes a profile
// through to Redis and bumps the profile epoch "<prefix>:profiles". Each
// replica reads the epoch at most once per Options.ProfileTTL (5s by
// default; one read for all subjects, batched with the Checks), and when
// it moved, re-reads a subject's profile before deciding its next
// request. A tier change on one replica so binds on all within the TTL,
// and a snapshot saved by another replica can no longer undo it; while no
// profile changes, a replica reads each subject's profile once. After a
// failed read or poll, the next good poll counts as a change, so nothing
// missed during an outage stays stale.
//
// # Settlement
//
// Store implements engine.Settler, so that a decision made on one replica
// can be settled on any other (engine.Settle), exactly once. The charge
// script that admits a decision held for settlement (Plan.Pending) records
// it in the hash "<prefix>:{<slot tag>}:d:<id hex>": field "r" holds the
// record as JSON, "fa" and "fc" what its cost took from the allowance and
// from the credits; the hash expires after PendingMaxAge. The settling
// replica knows only the decision id, and in a cluster the charge script
// reaches only the owner's slot, so the store writes that slot into the
// id (14 of its random bits, after the variant: the id stays a UUIDv7 with
// 48 random bits) and names the record with a hash tag chosen to hash to
// that slot (the first of "0", "1", ... in base 36 that does). Settling is
// a read of the record and the mark "<prefix>:{<slot tag>}:ds:<id hex>",
// then one script on the owner's slot that checks the record is still
// there, deletes it, sets the mark (kept for PendingMaxAge), and gives back
// or charges the balance ("a" within the grant period "p" it was taken
// from and never above "g"; "c" never above the most credits) and the
// window counts (while "s:L" is still the charged window). A record gone
// meanwhile changes nothing and is a duplicate, so a settlement that timed
// out may be sent again. A frozen (moved) state hash refuses it (ErrMoved).
//
// In leased mode a charge served from this replica's blocks runs no
// script: its record is written on its own (one more call for such a
// Check), all its cost counted from the allowance, which is where blocks
// come from. A refund gives it back to "a" in Redis, and the block's
// unused rest is given back as usual, so nothing is lost or counted twice.
// An upward adjustment draws on what Redis holds: tokens that replicas
// hold in blocks count as spent, so more of it may be Owed than in exact
// mode. The settling replica gives window counts back in its own cache
// too; another replica's cache learns of them at its next charge of that
// subject through Redis, and one whose cached window is full refuses from
// its cache until the window ends (it never admits more than Redis
// counts, but may refuse a request that a refund made room for).
//
// # Leased mode
//
// With Options.Lease = N, a replica that needs a fixed-window counter
// reserves a block of up to N units of it in the same script call (never
// past the limit: the block is counted in Redis at once), and serves the
// next requests from memory until the block is used or the window ends.
// A priced request likewise reserves up to N times its cost of the
// balance's allowance, when the allowance covers the cost; what is left
// of a replica's previous block goes back to the allowance in the same
// call. Credits are never leased, and sliding counters are always
// charged exactly. One reservation per counter or balance is in flight
// per replica at a time: the requests meanwhile are charged exactly.
//
// The error bound: leased mode never admits more than a limit, nor spends
// more than a balance, across any number of replicas, and a balance never
// goes negative: every block is taken in Redis before it is used. It may
// refuse early: units that other replicas hold unused count as used, so a
// request can be refused while up to N-1 units per other replica of a
// counter (N-1 requests' worth of tokens of a balance) are still unused.
// A replica that stops forgets its blocks, which stay counted until the
// window (or the grant period) ends. Exact mode (Lease 0) is the default.
package redis
