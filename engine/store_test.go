package engine

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEvictionNeverResetsUsage(t *testing.T) {
	const subjects, limit = 10_000, 3
	store := NewMemoryStore()
	cfg := oneTier(LimitConfig{Period: hour, Max: limit})
	cfg.CacheSize = 100
	cfg.Store = store
	e := newEngine(t, cfg)
	admitted := make([]int, subjects)
	for round := range limit + 2 {
		for i := range subjects {
			d := chargeAt(t, e, t0.Add(time.Duration(round)*time.Second), Request{Subject: "s" + strconv.Itoa(i)})
			if d.Allowed {
				admitted[i]++
			}
		}
	}
	for i, n := range admitted {
		if n != limit {
			t.Fatalf("subject s%d admitted %d times, want exactly %d", i, n, limit)
		}
	}
	s := e.Stats()
	if s.Subjects > 100+2*s.Shards || s.Evictions == 0 || s.Loads == 0 {
		t.Fatalf("stats %+v: want at most ~100 cached, evictions and loads", s)
	}
	if store.Len() < subjects-s.Subjects {
		t.Fatalf("store holds %d subjects, want at least %d", store.Len(), subjects-s.Subjects)
	}
}

// slowStore is a MemoryStore whose first Save blocks until released, like
// a database stalled on a write.
type slowStore struct {
	*MemoryStore
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newSlowStore() *slowStore {
	return &slowStore{MemoryStore: NewMemoryStore(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *slowStore) Save(ctx context.Context, snaps []Snapshot) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.MemoryStore.Save(ctx, snaps)
}

// TestPendingSaveKeepsUsage evicts a subject whose save then stalls, and
// charges it again meanwhile: the state must come back from the pending
// saves, not be loaded fresh (which would reset its usage).
func TestPendingSaveKeepsUsage(t *testing.T) {
	store := newSlowStore()
	cfg := oneTier(LimitConfig{Period: hour, Max: 1})
	cfg.Shards, cfg.CacheSize, cfg.Store = 1, 2, store
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "a"}, 1)
	admitN(t, e, t0, Request{Subject: "b"}, 1)
	done := make(chan error, 1)
	go func() { // evicts "a"; its save stalls
		_, err := e.ChargeAt(context.Background(), t0, Request{Subject: "c"})
		done <- err
	}()
	<-store.entered
	if d := chargeAt(t, e, t0, Request{Subject: "a"}); d.Allowed {
		t.Fatal(`"a" admitted a second time while its evicted state was being saved: usage was reset`)
	}
	close(store.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if d := chargeAt(t, e, t0, Request{Subject: s}); d.Allowed {
			t.Fatalf("%q admitted a second time", s)
		}
	}
}

// failingStore fails every Save while failing is set.
type failingStore struct {
	*MemoryStore
	mu      sync.Mutex
	failing bool
}

func (s *failingStore) Save(ctx context.Context, snaps []Snapshot) error {
	s.mu.Lock()
	f := s.failing
	s.mu.Unlock()
	if f {
		return errors.New("disk full")
	}
	return s.MemoryStore.Save(ctx, snaps)
}

func (s *failingStore) set(f bool) {
	s.mu.Lock()
	s.failing = f
	s.mu.Unlock()
}

func TestFailedEvictionSaveIsRetried(t *testing.T) {
	store := &failingStore{MemoryStore: NewMemoryStore(), failing: true}
	cfg := oneTier(LimitConfig{Period: hour, Max: 1})
	cfg.Shards, cfg.CacheSize, cfg.Store = 1, 2, store
	e := newEngine(t, cfg)
	for _, s := range []string{"a", "b", "c", "d"} {
		admitN(t, e, t0, Request{Subject: s}, 1)
	}
	if e.Stats().StoreErrors == 0 {
		t.Fatal("no store errors counted")
	}
	// "a" and "b" are evicted but unsaved: they must still be refused.
	for _, s := range []string{"a", "b"} {
		if d := chargeAt(t, e, t0, Request{Subject: s}); d.Allowed {
			t.Fatalf("%q admitted again after a failed eviction save", s)
		}
	}
	store.set(false)
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, testConfig{Rules: Rules{Tiers: cfg.Tiers}, Options: Options{Store: store}})
	for _, s := range []string{"a", "b", "c", "d"} {
		if d := chargeAt(t, e2, t0, Request{Subject: s}); d.Allowed {
			t.Fatalf("%q admitted by a new engine on the same store: its state was not saved", s)
		}
	}
}

func TestLoadErrorIsAnError(t *testing.T) {
	cfg := oneTier()
	cfg.Store = errStore{}
	cfg.Tiers["standard"] = TierConfig{FailureMode: FailOpen}
	e := newEngine(t, cfg)
	d, err := e.ChargeAt(context.Background(), t0, Request{Subject: "a"})
	if err == nil || d.FailureMode != FailOpen || d.Tier != "standard" {
		t.Fatalf("err %v failure mode %v, want an error with the tier's failure mode", err, d.FailureMode)
	}
}

type errStore struct{}

func (errStore) Load(context.Context, string) (Snapshot, bool, error) {
	return Snapshot{}, false, errors.New("connection refused")
}
func (errStore) Save(context.Context, []Snapshot) error { return errors.New("connection refused") }

func TestFlushAndRestart(t *testing.T) {
	store := NewMemoryStore()
	cfg := oneTier(LimitConfig{Period: hour, Max: 3})
	cfg.Store = store
	cfg.Users = map[string]UserConfig{"alice": {Credits: 50}}
	cfg.Actions = map[string]ActionConfig{"op": {PerCall: 10}}
	cfg.Roles = map[string]RoleConfig{"r": {}}
	cfg.Teams = map[string]TeamConfig{"x": {}}
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice", Action: "op"}, 2)
	if err := e.SetProfile(context.Background(), "alice", Profile{Roles: []string{"r"}, Team: "x"}); err != nil {
		t.Fatal(err)
	}
	if store.Len() != 0 {
		t.Fatal("state saved before Flush without SyncWrites")
	}
	if err := e.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if store.Len() != 1 {
		t.Fatalf("store holds %d keys after Flush, want 1", store.Len())
	}
	e2 := newEngine(t, cfg)
	s := status(t, e2, t0, "alice")
	if limitUsed(t, s, "hour") != 2 || s.Balance != 30 || s.Profile.Team != "x" {
		t.Fatalf("restored status %+v, want 2 used, balance 30 and the profile", s)
	}
}

func TestSyncWrites(t *testing.T) {
	store := NewMemoryStore()
	cfg := oneTier(LimitConfig{Period: hour, Max: 3})
	cfg.Store, cfg.SyncWrites = store, true
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice"}, 1)
	snap, ok, err := store.Load(context.Background(), "alice")
	if err != nil || !ok || len(snap.Windows) != 1 || snap.Windows[0].Current != 1 {
		t.Fatalf("after a synchronous charge the store has %+v (ok %v, err %v)", snap, ok, err)
	}
}

func TestRunFlushesUntilStopped(t *testing.T) {
	store := NewMemoryStore()
	cfg := oneTier(LimitConfig{Period: hour, Max: 3})
	cfg.Store = store
	cfg.FlushInterval = time.Hour // only the final flush can run
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "alice"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if store.Len() != 1 {
		t.Fatalf("store holds %d keys after Run stopped, want 1 (the final flush)", store.Len())
	}
}

func TestMemoryStoreKeepsHighestVersion(t *testing.T) {
	s := NewMemoryStore()
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Save(ctx, []Snapshot{{Key: "a", Version: 5, Credits: 5}}))
	must(s.Save(ctx, []Snapshot{{Key: "a", Version: 3, Credits: 3}}))
	got, ok, err := s.Load(ctx, "a")
	if err != nil || !ok || got.Credits != 5 {
		t.Fatalf("Load = %+v %v %v, want version 5", got, ok, err)
	}
	must(s.Save(ctx, []Snapshot{{Key: "a", Version: 6, Credits: 6}}))
	if got, _, _ := s.Load(ctx, "a"); got.Credits != 6 {
		t.Fatalf("credits %d, want 6", got.Credits)
	}
}

// deferred is a Deferrer that records what it is handed.
type deferred struct {
	mu    sync.Mutex
	snaps []Snapshot
}

func (d *deferred) Defer(snaps []Snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.snaps = append(d.snaps, snaps...)
}

func TestDeferredSyncWrites(t *testing.T) {
	store := NewMemoryStore()
	def := &deferred{}
	cfg := oneTier(LimitConfig{Period: hour, Max: 2})
	cfg.Store, cfg.SyncWrites, cfg.Deferrer = store, true, def
	cfg.Users = map[string]UserConfig{"alice": {Team: "x"}}
	cfg.Teams = map[string]TeamConfig{"x": {Limits: []LimitConfig{{Name: "team", Period: hour, Max: 10}}}}
	e := newEngine(t, cfg)
	ctx := context.Background()

	d := chargeAt(t, e, t0, Request{Subject: "alice"})
	if len(d.Unsaved) != 2 {
		t.Fatalf("Unsaved = %+v, want the subject's and the team's snapshots", d.Unsaved)
	}
	if !reflect.DeepEqual(def.snaps, d.Unsaved) {
		t.Fatalf("the Deferrer got %+v, the caller %+v; want the same snapshots", def.snaps, d.Unsaved)
	}
	for _, s := range d.Unsaved {
		if len(s.Windows) != 1 || s.Windows[0].Current != 1 || s.Version == 0 {
			t.Errorf("unsaved snapshot %+v, want one window at 1 and a version", s)
		}
	}
	if store.Len() != 0 {
		t.Fatal("Charge saved to the Store although a Deferrer took the saves over")
	}
	// What was handed over counts as saved: a flush does not save it again.
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if store.Len() != 0 {
		t.Fatalf("Flush saved %d deferred states; the Deferrer answers for them", store.Len())
	}

	// A second charge hands over newer versions of the same keys.
	first := d.Unsaved
	d = chargeAt(t, e, t0, Request{Subject: "alice"})
	for i, s := range d.Unsaved {
		if s.Key != first[i].Key || s.Version <= first[i].Version {
			t.Errorf("snapshot %d: %s v%d after %s v%d; want a higher version of the same key", i, s.Key, s.Version, first[i].Key, first[i].Version)
		}
	}
	// The first refusal marks the window breached, a change to hand over;
	// the next changes nothing and hands over nothing.
	d = chargeAt(t, e, t0, Request{Subject: "alice"})
	if d.Allowed || len(d.Unsaved) != 1 || d.Unsaved[0].Key != "alice" || !d.Unsaved[0].Windows[0].Breached {
		t.Fatalf("first refusal: allowed %v, Unsaved %+v; want alice's breached window", d.Allowed, d.Unsaved)
	}
	d = chargeAt(t, e, t0, Request{Subject: "alice"})
	if d.Allowed || d.Unsaved != nil {
		t.Fatalf("second refusal: allowed %v, Unsaved %+v; want nothing handed over", d.Allowed, d.Unsaved)
	}
}

func TestDeferrerNeedsSyncWrites(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 2})
	cfg.Deferrer = &deferred{}
	_, err := New(cfg.Rules, cfg.Options)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "SyncWrites") {
		t.Fatalf("New = %v, want ErrInvalidConfig naming SyncWrites", err)
	}
}

func TestBatchModeHandsNothingOver(t *testing.T) {
	cfg := oneTier(LimitConfig{Period: hour, Max: 2})
	d := chargeAt(t, newEngine(t, cfg), t0, Request{Subject: "alice"})
	if d.Unsaved != nil {
		t.Fatalf("Unsaved = %+v without a Deferrer, want nil", d.Unsaved)
	}
}
