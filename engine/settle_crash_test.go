package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// crashStore is a MemoryStore that keeps an image of what it holds after
// every save: each image is what a restart after a crash at that moment
// would find.
type crashStore struct {
	m      *MemoryStore
	mu     sync.Mutex
	images []*MemoryStore
}

func (c *crashStore) Load(ctx context.Context, key string) (Snapshot, bool, error) {
	return c.m.Load(ctx, key)
}

func (c *crashStore) Save(ctx context.Context, snaps []Snapshot) error {
	return c.SavePending(ctx, snaps, nil, time.Time{})
}

func (c *crashStore) SavePending(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now time.Time) error {
	c.mu.Lock() // saves in order, each followed by its image
	defer c.mu.Unlock()
	if err := c.m.SavePending(ctx, snaps, recs, now); err != nil {
		return err
	}
	img := NewMemoryStore()
	c.m.mu.Lock()
	for _, me := range c.m.snaps {
		img.snaps[me.snap.Key] = &memEntry{snap: me.snap.clone(), at: len(img.keys)}
		img.keys = append(img.keys, me.snap.Key)
	}
	img.pend = make(map[uuid.UUID]PendingRecord, len(c.m.pend))
	for id, r := range c.m.pend {
		img.pend[id] = r
	}
	c.m.mu.Unlock()
	c.images = append(c.images, img)
	return nil
}

func (c *crashStore) LoadPending(ctx context.Context, now time.Time) ([]PendingRecord, error) {
	return c.m.LoadPending(ctx, now)
}

// TestSettleCrashConsistency charges and settles from several goroutines
// while another flushes, then restarts from what the store held after
// each save, as a crash then would, and refunds every decision: each
// subject's credits come back to exactly where they started. A charge
// saved without its record would leave them short, and a refund saved
// without its settled mark would be refunded twice and leave them over.
func TestSettleCrashConsistency(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig{Rules: Rules{
		Tiers:   map[Tier]TierConfig{"credit": {Priority: PriorityMedium}},
		Actions: map[string]ActionConfig{"translate": {PerCall: 10}},
		Users: map[string]UserConfig{"c0": {Credits: 1000}, "c1": {Credits: 1000}, "c2": {Credits: 1000},
			"c3": {Credits: 1000}},
	}}
	store := &crashStore{m: NewMemoryStore()}
	cfg.Store = store
	e := newEngine(t, cfg)
	var mu sync.Mutex
	var ids []uuid.UUID
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.Flush(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var work sync.WaitGroup
	for g := range 4 {
		work.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 300 {
				if i%25 == 0 { // flushes amid the others' work, however they are scheduled
					if err := e.Flush(ctx); err != nil {
						t.Error(err)
					}
				}
				if g%2 == 0 || i%3 == 0 {
					d := chargeAt(t, e, t0, Request{Subject: fmt.Sprint("c", rng.IntN(4)), Action: "translate"})
					if d.Allowed {
						mu.Lock()
						ids = append(ids, d.ID)
						mu.Unlock()
					}
					continue
				}
				mu.Lock()
				id := ids[rng.IntN(len(ids))]
				mu.Unlock()
				if _, err := e.SettleAt(ctx, Settlement{DecisionID: id, Status: 503}, t0); err != nil {
					t.Error(err)
				}
			}
		})
	}
	work.Wait()
	close(stop)
	wg.Wait()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	images := store.images
	store.mu.Unlock()
	if len(images) < 3 {
		t.Fatalf("only %d saves: the test crashes nowhere", len(images))
	}
	for n, img := range images {
		e2 := newEngine(t, testConfig{Rules: cfg.Rules, Options: Options{Store: img}})
		if _, err := e2.RestorePending(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if _, err := e2.SettleAt(ctx, Settlement{DecisionID: id, Status: 503}, t0); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 4 {
			if b := status(t, e2, t0, fmt.Sprint("c", i)).Balance; b != 1000 {
				t.Fatalf("after a crash at save %d of %d, c%d has %d credits once every decision is refunded, want 1000",
					n+1, len(images), i, b)
			}
		}
	}
}
