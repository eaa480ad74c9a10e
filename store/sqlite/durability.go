package sqlite

import (
	"fmt"
	"strings"
)

// Durability says when a saved snapshot is safe. The zero value is
// DurabilityBatch.
type Durability int

const (
	// DurabilityBatch commits in WAL mode with synchronous=NORMAL: a
	// committed Save survives the process being killed, and a power loss
	// may lose the last commits. The engine saves dirty state every flush
	// interval, so a crash loses at most that interval of charges.
	DurabilityBatch Durability = iota
	// DurabilitySync commits with synchronous=FULL: Save returns only once
	// the data is on disk. The engine saves each charge before answering.
	DurabilitySync
)

// String returns "batch" or "sync".
func (d Durability) String() string {
	switch d {
	case DurabilityBatch:
		return "batch"
	case DurabilitySync:
		return "sync"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability parses "batch" (or "") and "sync".
func ParseDurability(s string) (Durability, error) {
	switch strings.ToLower(s) {
	case "", "batch":
		return DurabilityBatch, nil
	case "sync":
		return DurabilitySync, nil
	}
	return 0, fmt.Errorf("store/sqlite: unknown durability %q: want batch or sync", s)
}
