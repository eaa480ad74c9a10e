package logtest

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrentWrites: lines written by many goroutines at once,
// while another reads, all arrive whole (run with -race).
func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	logger := slog.New(slog.NewTextHandler(&b, nil))
	const writers, lines = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				logger.Info("line", "writer", w, "i", i)
			}
		})
	}
	wg.Go(func() {
		for range lines {
			_ = b.String()
		}
	})
	wg.Wait()
	out := b.String()
	if got := strings.Count(out, "\n"); got != writers*lines {
		t.Fatalf("%d lines, want %d", got, writers*lines)
	}
	for w := range writers {
		if got := strings.Count(out, fmt.Sprintf("writer=%d ", w)); got != lines {
			t.Errorf("writer %d: %d lines, want %d", w, got, lines)
		}
	}
}
