// Package storetest is the conformance suite that every engine.Store
// passes: the in-memory store, store/sqlite and any later back end.
//
// A back end's test calls Run with a constructor that returns a fresh,
// empty store; the suite registers its cases as subtests.
package storetest
