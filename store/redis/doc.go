// Package redis keeps quotagate's shared state in Redis (or Redis Cluster),
// so that several replicas enforce one set of quotas.
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
// Check: a caller whose deadline passes returns an error at once. A
// pipeline that fails gives each of its callers an error.
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
// request lives in one slot and the script may touch them all atomically.
// The tag is the subject id, except for a member of a team that keeps state
// (team limits or a shared balance): then it is "team:<name>" for the
// member's keys and the team's alike, because a member's request charges
// both. The cost is that a large team's keys share one slot (one node);
// moving a subject to another team through its profile starts its counters
// afresh under the new tag.
//
// # Failures
//
// Every call has a deadline (Options.Timeout, 50ms by default) and is never
// retried: the client is built with MaxRetries -1. A script that timed out
// may or may not have run, so across replicas the error is bounded by one
// request per timed-out call, and it errs toward the caller (an unknown
// outcome is reported as an error and the tier's failure mode applies; the
// charge is not repeated). go-redis reconnects on its own; Healthy reports
// whether the last call succeeded, for the health endpoint. A request that
// a fail-open tier admits during an outage is counted in the replica's
// cached counters (not in its balance), so a subject that fills a window
// meanwhile is refused from the cache: an outage admits at most each limit
// once per replica on top of what Redis counted. Such a window asks Redis
// at most once a second whether it is really full (refused from the cache
// while the ask fails), and the first answer replaces the cached counts:
// within a second of the outage's end the subject is decided by Redis's
// counts again, and nothing is charged twice.
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
