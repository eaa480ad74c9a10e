package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// TestFileSharedUntilLastClose: a File stays open while any holder
// keeps its share, whichever closes first, and is closed, for good, by
// the last Close.
func TestFileSharedUntilLastClose(t *testing.T) {
	ctx := context.Background()
	f, err := OpenFile(filepath.Join(t.TempDir(), "x.db"), false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g, err := f.Share()
	if err != nil || g != f {
		t.Fatalf("Share: %v, %v", g, err)
	}
	if _, err := f.Writer().ExecContext(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if _, err := g.Writer().ExecContext(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatalf("write after one holder closed: %v", err)
	}
	var n int
	if err := g.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read after one holder closed: %d, %v", n, err)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("last Close: %v", err)
	}
	if _, err := f.Writer().ExecContext(ctx, `INSERT INTO t VALUES (2)`); err == nil {
		t.Fatal("the writer still works after the last Close")
	}
	if _, err := f.Share(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Share after the last Close: %v, want ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close after the last: %v, want the last Close's result", err)
	}
}

// TestWritesUseOneConnection: however many writes run at once, the
// writer pool never opens a second connection (a second writer would
// empty the first one's page cache at each of its transactions).
func TestWritesUseOneConnection(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				snap := engine.Snapshot{Key: fmt.Sprintf("k%d-%d", w, i), Version: 1, Credits: int64(i)}
				if err := s.Save(ctx, []engine.Snapshot{snap}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := s.File().Writer().Stats().MaxOpenConnections; got != 1 {
		t.Fatalf("writer pool allows %d connections, want 1", got)
	}
	if got := s.File().Writer().Stats().OpenConnections; got != 1 {
		t.Fatalf("writer pool has %d connections open, want 1", got)
	}
}
