package sqlite

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// TestPendingLogMatchesMemoryStore runs random sequences of pending saves
// (open, settled and dropped records, stale open ones after their
// settlement, records already expired), loads, compactions, graceful
// restarts and crashes against engine.MemoryStore, which keeps the same
// contract in a map. Some runs start from rows in the table pending, as
// earlier versions wrote them. A small compaction threshold makes the
// store compact often.
func TestPendingLogMatchesMemoryStore(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			ctx := context.Background()
			if seed%4 >= 2 {
				// Saves as the background flush makes them, pausing at
				// every step: the outcome must not change.
				pace := &engine.Pacer{Slice: time.Nanosecond, Pause: time.Microsecond, MaxProcs: 1 << 20}
				ctx = engine.WithPacer(ctx, pace)
				t.Cleanup(func() {
					if pace.Pauses() == 0 {
						t.Error("the Pacer never paused: saves take no steps")
					}
				})
			}
			path := filepath.Join(t.TempDir(), "state.db")
			model := engine.NewMemoryStore()
			now := time.Unix(1767225600, 0).UTC()
			open := func() *Store {
				s, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				s.compactMin = int64(rng.IntN(3000))
				return s
			}
			s := open()
			defer func() { s.Close() }()
			ids := make([]uuid.UUID, 40)
			for i := range ids {
				binary.BigEndian.PutUint64(ids[i][:8], uint64(now.UnixMilli()+int64(i))<<16|0x7000)
				binary.BigEndian.PutUint64(ids[i][8:], 0x8000000000000000|uint64(i))
			}
			record := func() engine.PendingRecord {
				r := randomPending(rng)
				r.ID = ids[rng.IntN(len(ids))]
				r.State = engine.PendingState(rng.IntN(3))
				r.DecidedAt = now
				r.Expires = now.Add(time.Duration(rng.IntN(600)-30) * time.Second)
				return r
			}
			if seed%2 == 1 {
				// Rows of the table pending, as an earlier version wrote them.
				for range 10 {
					r := record()
					if r.State == engine.PendingDropped || !r.Expires.After(now) {
						continue
					}
					settled := 0
					if r.State == engine.PendingSettled {
						settled = 1
					}
					// The upsert of earlier versions.
					if _, err := s.File().Writer().ExecContext(ctx, `INSERT INTO pending (id, settled, expires, data) VALUES (?1, ?2, ?3, ?4)
						ON CONFLICT (id) DO UPDATE SET settled = excluded.settled, expires = excluded.expires, data = excluded.data
						WHERE excluded.settled >= pending.settled`,
						r.ID[:], settled, r.Expires.UnixNano(), appendPending(nil, &r)); err != nil {
						t.Fatal(err)
					}
					if err := model.SavePending(ctx, nil, []engine.PendingRecord{r}, now); err != nil {
						t.Fatal(err)
					}
				}
			}
			for step := range 300 {
				switch op := rng.IntN(20); {
				case op < 11:
					recs := make([]engine.PendingRecord, rng.IntN(6))
					for i := range recs {
						recs[i] = record()
					}
					if err := s.SavePending(ctx, nil, recs, now); err != nil {
						t.Fatalf("step %d: SavePending: %v", step, err)
					}
					model.SavePending(ctx, nil, recs, now)
				case op < 15:
					at := now.Add(time.Duration(rng.IntN(120)) * time.Second)
					got, err := s.LoadPending(ctx, at)
					if err != nil {
						t.Fatalf("step %d: LoadPending: %v", step, err)
					}
					want, _ := model.LoadPending(ctx, at)
					if !samePending(got, want) {
						t.Fatalf("step %d: LoadPending(%s) at %s:\n got %s\nwant %s", step, at, now, pendingDiff(got, want), pendingDiff(want, got))
					}
				case op < 16:
					if err := s.compact(ctx); err != nil {
						t.Fatalf("step %d: compact: %v", step, err)
					}
				case op < 17:
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = open()
				case op < 18:
					s = open() // a crash: the first store is never closed
				default:
					now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
				}
			}
			if c, failed := s.Compactions(); failed != 0 {
				t.Errorf("%d compactions failed (%d committed)", failed, c)
			}
		})
	}
}

// samePending reports whether a and b hold the same records, in any order.
func samePending(a, b []engine.PendingRecord) bool {
	if len(a) != len(b) {
		return false
	}
	norm := func(rs []engine.PendingRecord) []engine.PendingRecord {
		out := make([]engine.PendingRecord, len(rs))
		for i, r := range rs {
			// Through the binary format, as the store keeps them: times
			// in UTC, empty and nil windows alike.
			out[i], _ = decodePending(r.ID[:], appendPending(nil, &r))
		}
		slices.SortFunc(out, func(x, y engine.PendingRecord) int { return strings.Compare(x.ID.String(), y.ID.String()) })
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// pendingDiff lists the records of a that b lacks or holds otherwise.
func pendingDiff(a, b []engine.PendingRecord) string {
	var out strings.Builder
	for _, r := range a {
		if !slices.ContainsFunc(b, func(o engine.PendingRecord) bool {
			return samePending([]engine.PendingRecord{r}, []engine.PendingRecord{o})
		}) {
			fmt.Fprintf(&out, "%s (state %d, expires %s) ", r.ID, r.State, r.Expires.Format(time.TimeOnly))
		}
	}
	return out.String()
}

// TestPendingLogStaysSmall: a steady stream of decisions, each dropped
// some saves later, keeps the log near the size of what is live: the
// rows that die are deleted, with no compaction at all. When one record
// stays live from the start, holding the oldest row, compactions bound
// the log instead. Either way LoadPending returns what is live.
func TestPendingLogStaysSmall(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			ctx := context.Background()
			s := openTemp(t, Options{})
			s.compactMin = 64 << 10
			if !pinned {
				s.compactMin = 1 << 40
			}
			now := time.Unix(1767225600, 0).UTC()
			rng := rand.New(rand.NewPCG(1, 2))
			var live []engine.PendingRecord
			var keep []engine.PendingRecord
			for i := range 400 {
				var recs []engine.PendingRecord
				for range 20 {
					r := randomPending(rng)
					r.State, r.Expires = engine.PendingOpen, now.Add(time.Hour)
					recs = append(recs, r)
					if pinned && i == 0 && len(keep) == 0 {
						keep = append(keep, r)
						continue
					}
					live = append(live, r)
				}
				for len(live) > 200 {
					recs = append(recs, engine.PendingRecord{ID: live[0].ID, State: engine.PendingDropped})
					live = live[1:]
				}
				if err := s.SavePending(ctx, nil, recs, now); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.LoadPending(ctx, now)
			if want := append(keep, live...); err != nil || !samePending(got, want) {
				t.Fatalf("LoadPending = %d records, %v; want the %d live ones", len(got), err, len(want))
			}
			var rows, logBytes int64
			s.File().Reader().QueryRowContext(ctx, `SELECT count(*), sum(length(data)) FROM pending_log`).Scan(&rows, &logBytes)
			c, failed := s.Compactions()
			t.Logf("%d rows, %d bytes in the log; %d compactions", rows, logBytes, c)
			switch {
			case failed != 0:
				t.Fatalf("%d compactions failed", failed)
			case !pinned && (c != 0 || rows > 200/20+3):
				t.Fatalf("%d rows in the log after %d compactions; want about the 10 that hold live records, none compacted", rows, c)
			case pinned && (c == 0 || logBytes > 2*s.pendLiveBytes.Load()+s.compactMin+64<<10):
				t.Fatalf("%d compactions, %d bytes in the log for %d live; want it bounded", c, logBytes, s.pendLiveBytes.Load())
			}
		})
	}
}

// TestLoadPendingNamesBrokenLogRow: a log row that does not decode is an
// error naming the row and saying what to do; compactions fail on it and
// change nothing.
func TestLoadPendingNamesBrokenLogRow(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	now := time.Unix(1767225600, 0).UTC()
	r := randomPending(rand.New(rand.NewPCG(3, 4)))
	r.State, r.Expires = engine.PendingOpen, now.Add(time.Hour)
	if err := s.SavePending(ctx, nil, []engine.PendingRecord{r}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.File().Writer().ExecContext(ctx, `INSERT INTO pending_log (seq, data) VALUES (500, x'0100ff')`); err != nil {
		t.Fatal(err)
	}
	_, err := s.LoadPending(ctx, now)
	if err == nil || !strings.Contains(err.Error(), "pending_log row 500") || !strings.Contains(err.Error(), "delete that row") {
		t.Fatalf("LoadPending = %v, want an error naming row 500 and what to do", err)
	}
	if err := s.compact(ctx); err == nil {
		t.Fatal("compaction over a broken row succeeded")
	}
	if _, err := s.File().Writer().ExecContext(ctx, `DELETE FROM pending_log WHERE seq = 500`); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadPending(ctx, now); err != nil || !samePending(got, []engine.PendingRecord{r}) {
		t.Fatalf("after deleting the row: %d records, %v", len(got), err)
	}
}

// FuzzDecodePendingLog: decoding any log row never panics, and the
// entries of one that decodes encode back to a row with the same entries.
func FuzzDecodePendingLog(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 9))
	for n := range 4 {
		recs := make([]engine.PendingRecord, n)
		for i := range recs {
			recs[i] = randomPending(rng)
		}
		row, err := encodePendingLog(time.Unix(1767225600, 0).UnixNano(), recs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(row)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		type entry struct {
			id uuid.UUID
			e  pendEntry
		}
		var got []entry
		now, err := decodePendingLog(data, func(_ int64, id uuid.UUID, e pendEntry) { got = append(got, entry{id, e}) })
		if err != nil {
			return
		}
		b := binary.AppendVarint([]byte{pendingLogFormat}, now)
		for _, g := range got {
			b = appendEntry(b, g.id, g.e)
		}
		var again []entry
		now2, err := decodePendingLog(b, func(_ int64, id uuid.UUID, e pendEntry) { again = append(again, entry{id, e}) })
		if err != nil || now2 != now || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded row decodes to %v, %d, %v; want %v, %d", again, now2, err, got, now)
		}
	})
}

// TestPendingLogTwoWriters: two stores on one file (two processes, or a
// CLI beside the server) append in turn; neither deletes a row the other
// still needs, so what either loads matches MemoryStore given every save.
func TestPendingLogTwoWriters(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 21))
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			var stores [2]*Store
			for i := range stores {
				s, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				// No compactions, which would mend what a wrong
				// deletion did: this is about deleting rows.
				s.compactMin = 1 << 40
				defer s.Close()
				stores[i] = s
			}
			model := engine.NewMemoryStore()
			now := time.Unix(1767225600, 0).UTC()
			var ids []uuid.UUID
			for i := range 20 {
				ids = append(ids, uuid.UUID{0x01, 0x9c, byte(i), 0, 0, 0, 0x70, 0, 0x80, byte(i)})
			}
			for step := range 300 {
				s := stores[rng.IntN(2)]
				var recs []engine.PendingRecord
				for range 1 + rng.IntN(4) {
					r := randomPending(rng)
					r.ID, r.State = ids[rng.IntN(len(ids))], engine.PendingState(rng.IntN(3))
					r.Expires = now.Add(time.Hour)
					recs = append(recs, r)
				}
				if err := s.SavePending(ctx, nil, recs, now); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				model.SavePending(ctx, nil, recs, now)
				got, err := stores[rng.IntN(2)].LoadPending(ctx, now)
				want, _ := model.LoadPending(ctx, now)
				if err != nil || !samePending(got, want) {
					t.Fatalf("step %d: LoadPending (%v):\n got %s\nwant %s", step, err, pendingDiff(got, want), pendingDiff(want, got))
				}
			}
		})
	}
}
