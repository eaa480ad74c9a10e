// Package redis keeps quotagate's shared state in Redis (or Redis Cluster),
// so that several replicas enforce one set of quotas.
//
// Store implements engine.Authority: every Check that the engine's local
// cache cannot refuse runs one Lua script that checks every window counter
// of the request and the balance, then charges all of them or none. The
// script is loaded once and run with EVALSHA; go-redis reloads it when the
// server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
//
// # Keys
//
// Window counters are plain integers named
// "<prefix>:{<tag>}:w:<owner>:<limit>:<window start, unix ms>", so a new
// window is a new key and rolling needs no script logic. A fixed counter
// expires at its window's end, a sliding one a window later (it weighs in
// the next window's estimate), each plus Options.ExpiryMargin for clock
// skew between replicas. Balances are hashes "<prefix>:{<tag>}:b:<owner>"
// with the grant period, the allowance left of it and the credits; they
// never expire. Snapshots (engine.Store) are hashes "<prefix>:{<key>}:s".
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
// whether the last call succeeded, for the health endpoint.
//
// # Leased mode
//
// With Options.Lease = N, a replica that needs a fixed-window counter
// reserves a block of up to N units of it in the same script call (never
// past the limit: the block is counted in Redis at once), and serves the
// next requests from memory until the block is used or the window ends.
// Sliding counters and balances are never leased: each cost is charged in
// Redis, so a balance stays exact and never goes negative.
//
// The error bound: leased mode never admits more than a limit, across any
// number of replicas. It may refuse early: units that other replicas hold
// unused count as used, so a request can be refused while up to (N-1)
// units per other replica (more only while one replica reserves several
// blocks at once under concurrency) are still unused in the window. A
// replica that stops forgets its blocks, which stay counted until the
// window ends. Exact mode (Lease 0) is the default.
package redis
