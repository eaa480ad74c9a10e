// Command loadgen is the end-to-end load generator of `make bench`.
//
// It drives envoy.service.auth.v3.Authorization/Check calls at a server
// with go-control-plane's compiled protos: many concurrent callers over a
// few gRPC connections, each with one Check in flight (a closed loop), for
// a fixed window after a warm-up. The requests are shaped as Envoy sends
// them: the full AttributeContext (source and destination addresses,
// :authority, :method, :path, x-request-id, traceparent, the body),
// context_extensions naming the action, and the jwt_authn payload in the
// metadata context, for 10 000 users and a mix of translate, summarize and
// plain API calls with bodies of realistic word counts. A GET carries 13
// headers, a POST 15 (content-type, content-length). --mix get sends only
// the GETs without a body and --mix translate only translate POSTs with
// 300-word bodies: the single-shape rows of issue 17's table.
//
// "loadgen table --baseline NAME" adds a table of every server's CPU per
// Check as a ratio of NAME's, the median of the per-round ratios beside
// each round's (make bench prints it against noop-plain and noop).
//
// The denials come from testdata/bench.yaml, the quota config the benchmark
// starts quotagate with: the first --free-users users are freemium there
// (10 calls an hour) and receive --free-share of the requests, so once the
// warm-up has spent their hour nearly all of those are denied, while the
// other users' limits are sized never to bind. About 5% of Checks are
// denied, whatever the throughput; the actual fraction is printed.
//
// On a 2-core machine the load generator, not a cheap server, limits the
// throughput, so the figure that counts is the server's CPU time per Check:
// user plus system time from /proc/PID/stat (--server-pid), read at the two
// ends of the measured window, divided by the Checks answered in it.
// Latencies go into a log-bucketed histogram (1.6% resolution). By default
// the callers form a closed loop, so a slower server is also sent fewer
// Checks per second and its latencies are those of a saturated server;
// --rate paces them instead (an open loop), so that servers can be compared
// at the same load.
//
// Envoy propagates its trace context, so every request carries a
// traceparent; --trace-sampled (0.01 by default, Istio's default sampling)
// is the share of them flagged sampled, which a server with parent-based
// sampling must trace whatever its own sampling says.
//
// With --redis ADDR, loadgen also reads that Redis server's INFO
// commandstats at both ends of the measured window and reports the script
// calls (EVAL, EVALSHA: one round trip each) and all commands (those the
// scripts run included, which Redis counts too) per Check.
//
// "loadgen table" prints saved --json results side by side with the ratios
// of CPU per Check that .ci/bench-load checks against their targets.
//
// "loadgen otlp-sink --addr ADDR" is the OTLP/gRPC receiver the benchmark
// exports traces and metrics to: it serves the collector's TraceService
// and MetricsService, accepts and discards every export, and when stopped
// prints how many spans and metric exports it received.
package main
