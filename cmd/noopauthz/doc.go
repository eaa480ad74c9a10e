// Command noopauthz is an Envoy ext_authz gRPC server that answers every
// Check with OK and does nothing else.
//
// It is the ceiling of grpc-go on the machine that `make bench` runs on:
// .ci/bench-load drives it and quotagate with the same load and compares
// their server CPU time per Check. It uses the same transport settings as
// quotagate's defaults (keepalive, max concurrent streams, stream workers).
// With --plain it serves with grpc-go's default options instead, no stream
// workers and no tuning: the bare gRPC server a user would compare
// quotagate against, `make bench`'s noop-plain baseline.
//
// Usage:
//
//	noopauthz [--addr 127.0.0.1:9192] [--max-concurrent-streams 1024]
//	          [--keepalive-time 30s] [--keepalive-timeout 10s] [--keepalive-min-time 5s]
//	          [--plain]
//
// The address may also come from NOOPAUTHZ_ADDR; the flag wins. SIGTERM or
// SIGINT stops it gracefully, and it exits 0.
package main
