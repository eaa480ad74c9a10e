// Package store holds the persistence back ends behind engine.Store, one
// subpackage each: store/sqlite is the durable single-node default, and
// store/redis shares state between replicas, where it is also the
// engine.Authority that checks and charges every request atomically.
// Every back end passes the one conformance suite in store/storetest.
//
// The engine keeps subject state in memory and writes it behind the Check
// path: dirty subjects are saved in batches, on eviction and on shutdown,
// and a cache miss loads them back, so eviction and restarts never reset
// usage.
package store
