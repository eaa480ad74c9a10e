package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// logSnap is the snapshot of key at version v, its credits telling the
// versions apart.
func logSnap(key string, v uint64) engine.Snapshot {
	return engine.Snapshot{Key: key, Version: v, Credits: int64(v) * 10,
		Windows: []engine.WindowSnapshot{{Name: "hour", Start: time.Unix(1767225600, 0), Current: int64(v)}}}
}

// TestSnapshotLogMatchesModel runs random sequences of saves (stale
// versions among them, and saves whose work fails), loads, folds,
// graceful restarts and crashes (a second store opens the file while the
// first never closes) against a model of what must be kept: per key, the
// highest version of any save that succeeded. Small fold limits make the
// store fold, and refuse for lack of folds, often.
func TestSnapshotLogMatchesModel(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			limits := foldLimits{rows: 1 + rng.IntN(6), bytes: 1 + rng.IntN(4000), keys: 1 + rng.IntN(20), max: 64}
			open := func() *Store {
				s, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				s.foldAt = limits
				return s
			}
			s := open()
			defer func() { s.Close() }()
			want := map[string]uint64{}
			check := func(step int, key string) {
				t.Helper()
				got, ok, err := s.Load(ctx, key)
				v, saved := want[key]
				if err != nil || ok != saved || (saved && !reflect.DeepEqual(got, withKey(logSnap(key, v), key))) {
					t.Fatalf("step %d: Load(%s) = %+v, %v, %v; want version %d (saved %v)", step, key, got, ok, err, v, saved)
				}
			}
			for step := range 400 {
				key := fmt.Sprintf("user-%d", rng.IntN(30))
				switch op := rng.IntN(20); {
				case op < 12:
					snaps := make([]engine.Snapshot, 1+rng.IntN(8))
					for i := range snaps {
						k := fmt.Sprintf("user-%d", rng.IntN(30))
						// Some stale: an older or the same version.
						snaps[i] = logSnap(k, max(1, want[k]+uint64(rng.IntN(5)))-uint64(rng.IntN(2)))
					}
					fail := rng.IntN(6) == 0
					err := s.SaveWith(ctx, snaps, func(context.Context, *sql.Tx) error {
						if fail {
							return errors.New("injected")
						}
						return nil
					})
					if (err != nil) != fail {
						t.Fatalf("step %d: SaveWith = %v, want failure %v", step, err, fail)
					}
					if !fail {
						for _, sn := range snaps {
							want[sn.Key] = max(want[sn.Key], sn.Version)
						}
					}
				case op < 16:
					check(step, key)
				case op < 17:
					if err := s.fold(ctx); err != nil {
						t.Fatalf("step %d: fold: %v", step, err)
					}
				case op < 18:
					if err := s.Close(); err != nil {
						t.Fatalf("step %d: Close: %v", step, err)
					}
					s = open()
				default:
					// A crash: this store never folds again; the next
					// Open recovers its log from the file.
					s = open()
				}
			}
			for i := range 30 {
				check(-1, fmt.Sprintf("user-%d", i))
			}
			var rows int
			s.File().Reader().QueryRowContext(ctx, `SELECT count(*) FROM snapshot_log`).Scan(&rows)
			if rows > limits.rows+1 {
				t.Errorf("%d rows in the snapshot log, want at most the fold limit %d (+1)", rows, limits.rows)
			}
		})
	}
}

func withKey(s engine.Snapshot, key string) engine.Snapshot { s.Key = key; return s }

// TestFoldFailureKeepsEverything: while folds fail (a trigger refuses
// writes to the snapshots table), saves go on into the log and load from
// recent; at the limit Save refuses with an error that says why, and
// writes nothing. Once the table takes writes again, the next save folds
// everything, and a restart loads it from the table.
func TestFoldFailureKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.foldAt = foldLimits{rows: 2, bytes: 1 << 20, keys: 100, max: 5}
	w := s.File().Writer()
	if _, err := w.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON snapshots BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	for v := range uint64(5) {
		if err := s.Save(ctx, []engine.Snapshot{logSnap("alice", v+1)}); err != nil {
			t.Fatalf("save %d: %v", v+1, err)
		}
	}
	if ok, failed := s.Folds(); ok != 0 || failed == 0 {
		t.Fatalf("folds: %d committed, %d failed; want only failures", ok, failed)
	}
	err = s.Save(ctx, []engine.Snapshot{logSnap("alice", 6)})
	if err == nil || !strings.Contains(err.Error(), "nothing more is saved") {
		t.Fatalf("save past the limit = %v, want a refusal that says why", err)
	}
	if got, _, _ := s.Load(ctx, "alice"); got.Version != 5 {
		t.Fatalf("after the refusal Load = version %d, want 5", got.Version)
	}
	if _, err := w.ExecContext(ctx, `DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, []engine.Snapshot{logSnap("alice", 6)}); err != nil {
		t.Fatalf("save after the fix: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rows int
	s.File().Reader().QueryRowContext(ctx, `SELECT count(*) FROM snapshot_log`).Scan(&rows)
	if got, _, err := s.Load(ctx, "alice"); err != nil || got.Version != 6 || rows != 0 {
		t.Fatalf("after restart: version %d, %v, %d log rows; want version 6 from the table", got.Version, err, rows)
	}
}

// TestOpenRefusesBrokenLogRow: a log row that does not decode stops Open
// with an error naming the row and saying what to do, and changes
// nothing.
func TestOpenRefusesBrokenLogRow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, []engine.Snapshot{logSnap("alice", 1)}); err != nil {
		t.Fatal(err)
	}
	rows, _, _ := encode([]engine.Snapshot{logSnap("bob", 1)})
	good := appendLogRow(nil, rows)
	for _, data := range [][]byte{{}, {0x7f}, good[:len(good)-1], append(bytes.Clone(good), 0x01)} {
		if _, err := s.File().Writer().ExecContext(ctx, `INSERT INTO snapshot_log (seq, data) VALUES (1000, ?1)`, data); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, path, Options{})
		if err == nil || !strings.Contains(err.Error(), "snapshot_log row 1000") || !strings.Contains(err.Error(), "delete that row") {
			t.Fatalf("Open with log row %x = %v, want an error naming row 1000 and what to do", data, err)
		}
		if _, err := s.File().Writer().ExecContext(ctx, `DELETE FROM snapshot_log WHERE seq = 1000`); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok, err := s.Load(ctx, "alice"); err != nil || !ok || got.Version != 1 {
		t.Fatalf("Load after the refused opens = %+v, %v, %v", got, ok, err)
	}
	s.Close()
}

// FuzzDecodeLogRow: decoding any log row never panics, and a row that
// decodes encodes back to a row that decodes to the same snapshots.
func FuzzDecodeLogRow(f *testing.F) {
	rows, _, _ := encode([]engine.Snapshot{logSnap("alice", 1), logSnap("bob", 7), {Key: "", Version: 0}})
	f.Add(appendLogRow(nil, rows))
	f.Add(appendLogRow(nil, rows[:1]))
	f.Add([]byte{logFormat})
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := decodeLogRow(data)
		if err != nil {
			return
		}
		again, err := decodeLogRow(appendLogRow(nil, rows))
		if err != nil || !reflect.DeepEqual(again, rows) {
			t.Fatalf("re-encoded row decodes to %+v, %v; want %+v", again, err, rows)
		}
	})
}
