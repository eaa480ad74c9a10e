// Package logtest captures output that tests read while it is still being
// written: a logger's lines, or a server's stdout and stderr.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer collects everything written to it. Unlike a bytes.Buffer it is
// safe for concurrent use, so a test can read it (String) while a logger or
// a server goroutine writes to it. The zero value is an empty Buffer ready
// to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p. It never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
