package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/storetest"
)

func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, d := range []Durability{DurabilityBatch, DurabilitySync} {
		t.Run(d.String(), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) engine.Store { return openTemp(t, Options{Durability: d}) })
		})
	}
}

func TestReopenKeepsState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	want := engine.Snapshot{Key: "alice", Version: 4, Credits: 99}
	if err := s.Save(ctx, []engine.Snapshot{want}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, ok, err := s.Load(ctx, "alice")
	if err != nil || !ok || got.Credits != 99 || got.Version != 4 {
		t.Fatalf("Load after reopen = %+v, %v, %v; want credits 99 version 4", got, ok, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string
	}{
		{
			name: "parent is a file",
			path: filepath.Join(file, "state.db"),
			want: []string{file, "cannot be created", "--data-dir"},
		},
		{
			name: "parent of parent is a file",
			path: filepath.Join(file, "sub", "state.db"),
			want: []string{"sub", "--data-dir"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := openTemp(t, Options{})
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	ctx := context.Background()
	if err := s.Save(ctx, []engine.Snapshot{{Key: "a", Version: 1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.Load(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v, want ErrClosed", err)
	}
}

// TestGroupCommit holds the lead as if a transaction were being written,
// queues concurrent Saves behind it, then hands over: all of them must be
// committed in one transaction.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t, Options{Durability: DurabilitySync})
	s.mu.Lock()
	s.leading = true
	s.mu.Unlock()

	const callers = 16
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			snap := engine.Snapshot{Key: fmt.Sprintf("k%d", i), Version: 1}
			errs[i] = s.Save(context.Background(), []engine.Snapshot{snap})
		})
	}
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == callers {
			break
		}
		runtime.Gosched()
	}
	s.mu.Lock()
	s.pending[0].done <- saveResult{lead: true}
	s.mu.Unlock()
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("Save #%d: %v", i, err)
		}
	}
	if got := s.Commits(); got != 1 {
		t.Errorf("Commits() = %d, want 1 transaction for %d queued Saves", got, callers)
	}
	for i := range callers {
		if _, ok, err := s.Load(context.Background(), fmt.Sprintf("k%d", i)); err != nil || !ok {
			t.Errorf("Load(k%d) = ok %v, err %v", i, ok, err)
		}
	}
	s.mu.Lock()
	leading := s.leading
	s.mu.Unlock()
	if leading {
		t.Error("lead still held after the queue drained")
	}
}

func TestSaveRejectsHugeVersion(t *testing.T) {
	s := openTemp(t, Options{})
	err := s.Save(context.Background(), []engine.Snapshot{{Key: "a", Version: 1 << 63}})
	if err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("Save(version 2^63) = %v, want a version error", err)
	}
}

func TestParseDurability(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Durability
		wantErr bool
	}{
		{name: "empty", in: "", want: DurabilityBatch},
		{name: "batch", in: "batch", want: DurabilityBatch},
		{name: "sync upper", in: "SYNC", want: DurabilitySync},
		{name: "bad", in: "fsync", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDurability(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseDurability(%q) = %v, %v", tc.in, got, err)
			}
			if err == nil && got.String() != strings.ToLower(tc.in) && tc.in != "" {
				t.Errorf("String() = %q, want %q", got.String(), strings.ToLower(tc.in))
			}
		})
	}
}

func BenchmarkSave(b *testing.B) {
	for _, d := range []Durability{DurabilityBatch, DurabilitySync} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", d, batch), func(b *testing.B) {
				s := openTemp(b, Options{Durability: d})
				b.ReportAllocs()
				var n int64
				var mu sync.Mutex
				b.RunParallel(func(pb *testing.PB) {
					snaps := make([]engine.Snapshot, batch)
					for pb.Next() {
						mu.Lock()
						n++
						v := n
						mu.Unlock()
						for i := range snaps {
							snaps[i] = engine.Snapshot{
								Key: fmt.Sprintf("user-%d", (int(v)*batch+i)%10000), Version: uint64(v),
								Windows: []engine.WindowSnapshot{{Name: "hour", Start: time.Unix(0, 0), Current: v}},
							}
						}
						if err := s.Save(context.Background(), snaps); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.ReportMetric(float64(s.Commits())/float64(b.N), "commits/op")
			})
		}
	}
}

// TestConnectionPragmas checks that every connection gets the page cache
// and checkpoint interval of the DSN (a typo there is silently ignored).
func TestConnectionPragmas(t *testing.T) {
	s := openTemp(t, Options{})
	tests := []struct {
		name   string
		pragma string
		want   int
	}{
		{name: "page cache", pragma: "cache_size", want: -cacheKiB},
		{name: "checkpoint interval", pragma: "wal_autocheckpoint", want: walPages},
		{name: "page size", pragma: "page_size", want: pageSize},
		{name: "temporary files in memory", pragma: "temp_store", want: 2},
	}
	for _, tc := range tests {
		for _, pool := range []struct {
			name string
			db   *sql.DB
		}{{"writer", s.File().Writer()}, {"reader", s.File().Reader()}} {
			t.Run(tc.name+"/"+pool.name, func(t *testing.T) {
				var got int
				if err := pool.db.QueryRowContext(context.Background(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("PRAGMA %s = %d, want %d", tc.pragma, got, tc.want)
				}
			})
		}
	}
}
