package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

func codecSnapshots() []struct {
	name string
	snap engine.Snapshot
} {
	at := time.Unix(1767225600, 123456789)
	return []struct {
		name string
		snap engine.Snapshot
	}{
		{name: "empty", snap: engine.Snapshot{Version: 1}},
		{name: "balance and windows", snap: engine.Snapshot{
			Version: 1 << 40, Allowance: -5, Credits: 1 << 50, Grant: 1000,
			AllowancePeriod: at, AllowanceEnd: at.AddDate(0, 1, 0), BalanceRefused: at.Add(time.Hour),
			Windows: []engine.WindowSnapshot{
				{Name: "api_calls_per_minute", Start: at, Current: 3, Previous: 600, Next: 2, Warned: true},
				{Name: "api_calls_per_hour", Current: -1, Breached: true},
			},
		}},
		{name: "profile", snap: engine.Snapshot{
			Version: 7, BalanceAlerted: time.Unix(0, 0), Grant: -1,
			Profile: engine.Profile{Tier: "enterprise", Team: "ops", Roles: []string{"admin"}},
		}},
	}
}

// equalSnapshots compares with instants as instants (locations differ).
func equalSnapshots(a, b engine.Snapshot) bool {
	norm := func(s engine.Snapshot) engine.Snapshot {
		for _, t := range []*time.Time{&s.AllowancePeriod, &s.AllowanceEnd, &s.BalanceAlerted, &s.BalanceRefused} {
			if !t.IsZero() {
				*t = t.UTC()
			}
		}
		s.Windows = append([]engine.WindowSnapshot(nil), s.Windows...)
		for i := range s.Windows {
			if !s.Windows[i].Start.IsZero() {
				s.Windows[i].Start = s.Windows[i].Start.UTC()
			}
		}
		return s
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestCodecReadsRowsWithoutGrant: a row of the format before Grant
// (formatBinary) still decodes, with Grant 0 (not known).
func TestCodecReadsRowsWithoutGrant(t *testing.T) {
	snap := engine.Snapshot{Version: 3, Allowance: 40, Credits: 2, Grant: 100}
	data, err := appendSnapshot(nil, &snap)
	if err != nil {
		t.Fatal(err)
	}
	old := append([]byte{formatBinary}, data[1:len(data)-binaryVarintLen(snap.Grant)-binaryVarintLen(0)]...)
	got, err := decodeSnapshot(old)
	if err != nil {
		t.Fatalf("decode an old row: %v", err)
	}
	if got.Allowance != 40 || got.Credits != 2 || got.Grant != 0 || got.Version != 3 {
		t.Fatalf("old row = %+v; want allowance 40, credits 2, grant 0", got)
	}
}

// TestCodecReadsRowsWithoutEnd: a row of the format before AllowanceEnd
// (formatBinaryGrant) still decodes, with a zero AllowanceEnd (not known).
func TestCodecReadsRowsWithoutEnd(t *testing.T) {
	start := time.Unix(1767225600, 0)
	snap := engine.Snapshot{Version: 3, Allowance: 40, Grant: 100, AllowancePeriod: start, AllowanceEnd: start.AddDate(0, 1, 0)}
	data, err := appendSnapshot(nil, &snap)
	if err != nil {
		t.Fatal(err)
	}
	old := append([]byte{formatBinaryGrant}, data[1:len(data)-binaryVarintLen(snap.AllowanceEnd.UnixNano())]...)
	got, err := decodeSnapshot(old)
	if err != nil {
		t.Fatalf("decode an old row: %v", err)
	}
	if got.Grant != 100 || !got.AllowancePeriod.Equal(start) || !got.AllowanceEnd.IsZero() {
		t.Fatalf("old row = %+v; want grant 100, the period's start and no end", got)
	}
}

func binaryVarintLen(v int64) int { return len(binary.AppendVarint(nil, v)) }

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecSnapshots() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := appendSnapshot(nil, &tc.snap)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSnapshot(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !equalSnapshots(got, tc.snap) {
				t.Fatalf("round trip =\n%+v\nwant\n%+v", got, tc.snap)
			}
			for n := range len(data) {
				if _, err := decodeSnapshot(data[:n]); err == nil {
					t.Fatalf("decoding the first %d of %d bytes succeeded", n, len(data))
				}
			}
		})
	}
}

// TestOpenMigratesJSONRows opens a file written by the first schema, with
// JSON rows: the table is rebuilt and the rows still load.
func TestOpenMigratesJSONRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite", DSN(path, false, Options{}.withDefaults().BusyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, migrations[0]+`; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range codecSnapshots() {
		tc.snap.Key = tc.name
		data, err := json.Marshal(tc.snap)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO snapshots (key, version, data) VALUES (?, ?, ?)`,
			tc.name, tc.snap.Version, data); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, tc := range codecSnapshots() {
		t.Run(tc.name, func(t *testing.T) {
			tc.snap.Key = tc.name
			got, ok, err := s.Load(ctx, tc.name)
			if err != nil || !ok || !equalSnapshots(got, tc.snap) {
				t.Fatalf("Load = %+v, %v, %v; want %+v", got, ok, err, tc.snap)
			}
			// A newer save replaces the JSON row with a binary one.
			tc.snap.Version++
			if err := s.Save(ctx, []engine.Snapshot{tc.snap}); err != nil {
				t.Fatal(err)
			}
			if got, _, err := s.Load(ctx, tc.name); err != nil || !equalSnapshots(got, tc.snap) {
				t.Fatalf("Load after Save = %+v, %v; want %+v", got, err, tc.snap)
			}
		})
	}
}

// BenchmarkSaveFlush is one engine flush under the load benchmark: 1 000
// changed subjects out of 10 000 saved in one transaction.
func BenchmarkSaveFlush(b *testing.B) {
	s := openTemp(b, Options{})
	ctx := context.Background()
	snaps := make([]engine.Snapshot, 1000)
	at := time.Now()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		for j := range snaps {
			i++
			snaps[j] = engine.Snapshot{Key: fmt.Sprintf("user-%05d", (i*7919)%10000),
				Version: uint64(i), Allowance: int64(i), AllowancePeriod: at,
				Windows: []engine.WindowSnapshot{
					{Name: "api_calls_per_minute", Start: at, Current: 3},
					{Name: "api_calls_per_hour", Start: at, Current: 30},
				}}
		}
		if err := s.Save(ctx, snaps); err != nil {
			b.Fatal(err)
		}
	}
}
