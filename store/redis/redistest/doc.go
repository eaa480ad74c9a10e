// Package redistest starts real Redis processes on loopback for tests:
// one server, a Redis Cluster of primaries with replicas, or a primary
// and replica watched by Sentinels. Every process runs Debian's
// redis-server (with --sentinel for a Sentinel) on a free loopback port,
// in a throwaway directory, without persistence; redis-cli builds the
// cluster. .ci/deps/redis.sh installs both.
//
// The Start functions take a testing.TB and stop what they started at
// its cleanup; the New functions return an error and leave stopping to
// the caller, for a TestMain that shares one cluster across a package's
// tests. Nothing here is safe for concurrent use, except reading the
// addresses.
package redistest
