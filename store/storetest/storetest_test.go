package storetest_test

import (
	"testing"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/storetest"
)

// TestMemoryStore holds the engine's in-memory store to the same contract
// as the durable ones.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.Store { return engine.NewMemoryStore() })
}
