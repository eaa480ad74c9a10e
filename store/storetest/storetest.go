package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// Run runs the conformance suite against stores made by newStore. Each
// subtest calls newStore once and expects an empty store; newStore should
// register its own cleanup (t.Cleanup) to close what it opens.
func Run(t *testing.T, newStore func(t *testing.T) engine.Store) {
	t.Helper()
	cases := []suiteCase{
		{name: "load missing", run: testLoadMissing},
		{name: "round trip", run: testRoundTrip},
		{name: "highest version wins", run: testHighestVersion},
		{name: "empty save", run: testEmptySave},
		{name: "many keys", run: testManyKeys},
		{name: "odd keys", run: testOddKeys},
		{name: "concurrent", run: testConcurrent},
	}
	// A store that keeps pending decisions (engine.PendingStore) is held
	// to that contract too.
	if _, ok := newStore(t).(engine.PendingStore); ok {
		cases = append(cases, pendingCases...)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// suiteCase is one test of the suite, run on a fresh store.
type suiteCase struct {
	name string
	run  func(t *testing.T, s engine.Store)
}

// t0 is a fixed instant with a non-UTC zone, so a store that loses zones
// or sub-second precision is caught.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*3600))

func fullSnapshot(key string, version uint64) engine.Snapshot {
	sliding := engine.WindowSliding
	return engine.Snapshot{
		Key:     key,
		Version: version,
		Profile: engine.Profile{
			Tier:  "enterprise",
			Roles: []string{"admin", "translator"},
			Team:  "ops",
			Limits: []engine.LimitConfig{
				{Name: "hour", Period: engine.Period{Calendar: "hour", Every: time.Hour}, Max: 500},
				{
					Name:    "translate:15m",
					Period:  engine.Period{Every: 15 * time.Minute},
					Max:     40000,
					Unit:    engine.UnitUnits,
					Mode:    &sliding,
					Actions: []string{"translate"},
				},
			},
		},
		Windows: []engine.WindowSnapshot{
			{Name: "hour", Start: t0.Truncate(time.Hour), Current: 9, Previous: 10, Next: 1, Warned: true},
			{Name: "action:translate:day", Start: t0.Add(-time.Hour), Current: 1 << 40, Breached: true},
		},
		Allowance:       123456789,
		AllowancePeriod: t0.AddDate(0, 0, -3),
		AllowanceEnd:    t0.AddDate(0, 1, -3),
		Grant:           1000,
		Credits:         -42,
		BalanceAlerted:  t0.Add(-time.Minute),
		BalanceRefused:  t0.Add(time.Nanosecond),
	}
}

func testLoadMissing(t *testing.T, s engine.Store) {
	_, ok, err := s.Load(context.Background(), "nobody")
	if err != nil {
		t.Fatalf("Load(missing): %v", err)
	}
	if ok {
		t.Fatal("Load(missing) reported ok, want ok == false")
	}
}

func testRoundTrip(t *testing.T, s engine.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		snap engine.Snapshot
	}{
		{name: "minimal", snap: engine.Snapshot{Key: "alice", Version: 1}},
		{name: "every field", snap: fullSnapshot("bob", 7)},
		{name: "team key", snap: fullSnapshot("team:ops", 3)},
		{name: "windows only", snap: engine.Snapshot{Key: "carol", Version: 2, Windows: []engine.WindowSnapshot{{Name: "minute", Start: t0, Current: 1}}}},
		{name: "profile only", snap: engine.Snapshot{Key: "dave", Version: 5, Profile: engine.Profile{Tier: "standard"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Save(ctx, []engine.Snapshot{tc.snap}); err != nil {
				t.Fatalf("Save: %v", err)
			}
			mustLoad(t, s, tc.snap)
		})
	}
}

func testHighestVersion(t *testing.T, s engine.Store) {
	ctx := context.Background()
	tests := []struct {
		name    string
		batches [][]uint64 // versions saved, batch by batch
		want    uint64
	}{
		{name: "ascending", batches: [][]uint64{{1}, {2}, {3}}, want: 3},
		{name: "descending", batches: [][]uint64{{9}, {4}, {1}}, want: 9},
		{name: "stale in the middle", batches: [][]uint64{{2}, {8}, {5}}, want: 8},
		{name: "one batch ascending", batches: [][]uint64{{1, 2, 3}}, want: 3},
		{name: "one batch descending", batches: [][]uint64{{3, 2, 1}}, want: 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("versioned-%d", i)
			for _, batch := range tc.batches {
				snaps := make([]engine.Snapshot, 0, len(batch))
				for _, v := range batch {
					snaps = append(snaps, versioned(key, v))
				}
				if err := s.Save(ctx, snaps); err != nil {
					t.Fatalf("Save: %v", err)
				}
			}
			mustLoad(t, s, versioned(key, tc.want))
		})
	}
}

// versioned returns a snapshot whose content depends on its version, so a
// store that keeps one version's number with another's data is caught.
func versioned(key string, v uint64) engine.Snapshot {
	return engine.Snapshot{
		Key:     key,
		Version: v,
		Credits: int64(v) * 100,
		Windows: []engine.WindowSnapshot{{Name: "hour", Start: t0, Current: int64(v)}},
	}
}

func testEmptySave(t *testing.T, s engine.Store) {
	if err := s.Save(context.Background(), nil); err != nil {
		t.Fatalf("Save(nil): %v", err)
	}
}

func testManyKeys(t *testing.T, s engine.Store) {
	ctx := context.Background()
	const n = 500
	snaps := make([]engine.Snapshot, n)
	for i := range snaps {
		snaps[i] = versioned(fmt.Sprintf("user-%05d", i), uint64(i+1))
	}
	if err := s.Save(ctx, snaps); err != nil {
		t.Fatalf("Save(%d snapshots): %v", n, err)
	}
	for _, want := range snaps {
		mustLoad(t, s, want)
	}
}

func testOddKeys(t *testing.T, s engine.Store) {
	ctx := context.Background()
	keys := []string{
		"team:ops",
		"user@example.com",
		"spiffe://cluster.local/ns/default/sa/web",
		"'; DROP TABLE snapshots; --",
		`quote"back\slash`,
		"line\nbreak\ttab",
		"100%_like*?",
		"ключ-日本語-🙂",
		"  spaced  ",
		strings.Repeat("k", 1000),
	}
	for i, key := range keys {
		if err := s.Save(ctx, []engine.Snapshot{versioned(key, uint64(i+1))}); err != nil {
			t.Fatalf("Save(%q): %v", key, err)
		}
	}
	for i, key := range keys {
		mustLoad(t, s, versioned(key, uint64(i+1)))
	}
	if _, ok, err := s.Load(ctx, "team:%"); err != nil || ok {
		t.Fatalf("Load(%q) = ok %v, err %v; want a miss (no pattern matching)", "team:%", ok, err)
	}
}

func testConcurrent(t *testing.T, s engine.Store) {
	ctx := context.Background()
	const (
		workers = 8
		rounds  = 40
		keys    = 5
	)
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				key := fmt.Sprintf("shared-%d", r%keys)
				v := uint64(r*workers + w + 1)
				if err := s.Save(ctx, []engine.Snapshot{versioned(key, v)}); err != nil {
					errs <- fmt.Errorf("Save(%s v%d): %w", key, v, err)
					return
				}
				if _, _, err := s.Load(ctx, key); err != nil {
					errs <- fmt.Errorf("Load(%s): %w", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k := range keys {
		key := fmt.Sprintf("shared-%d", k)
		var want uint64
		for r := range rounds {
			for w := range workers {
				if r%keys == k {
					want = max(want, uint64(r*workers+w+1))
				}
			}
		}
		mustLoad(t, s, versioned(key, want))
	}
}

func mustLoad(t *testing.T, s engine.Store, want engine.Snapshot) {
	t.Helper()
	got, ok, err := s.Load(context.Background(), want.Key)
	if err != nil {
		t.Fatalf("Load(%q): %v", want.Key, err)
	}
	if !ok {
		t.Fatalf("Load(%q): not found after Save", want.Key)
	}
	if g, w := normalize(got), normalize(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("Load(%q) =\n%+v\nwant\n%+v", want.Key, g, w)
	}
}

// normalize makes snapshots comparable with reflect.DeepEqual: instants in
// UTC without monotonic readings, and empty slices as nil. A store need
// keep neither the zone nor the difference between nil and empty.
func normalize(s engine.Snapshot) engine.Snapshot {
	s.AllowancePeriod = s.AllowancePeriod.UTC()
	s.AllowanceEnd = s.AllowanceEnd.UTC()
	s.BalanceAlerted = s.BalanceAlerted.UTC()
	s.BalanceRefused = s.BalanceRefused.UTC()
	if len(s.Windows) == 0 {
		s.Windows = nil
	}
	ws := make([]engine.WindowSnapshot, len(s.Windows))
	for i, w := range s.Windows {
		w.Start = w.Start.UTC()
		ws[i] = w
	}
	if s.Windows != nil {
		s.Windows = ws
	}
	if len(s.Profile.Roles) == 0 {
		s.Profile.Roles = nil
	}
	if len(s.Profile.Limits) == 0 {
		s.Profile.Limits = nil
	}
	ls := make([]engine.LimitConfig, len(s.Profile.Limits))
	for i, l := range s.Profile.Limits {
		if len(l.Actions) == 0 {
			l.Actions = nil
		}
		ls[i] = l
	}
	if s.Profile.Limits != nil {
		s.Profile.Limits = ls
	}
	return s
}
