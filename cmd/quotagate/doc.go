// Command quotagate is an Envoy external-authorization service that enforces
// tiered, cost-based usage quotas. See `quotagate --help`.
//
// It only wires, parses flags and prints: wire.go is the one place that
// turns a loaded config.File into each component's options (engine rules,
// admin, notify, the Redis store, the ledger writer) and checks them, with
// paths in the file, on every load and reload.
package main
