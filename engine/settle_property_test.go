package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestSettleProperty runs random Charges and Settlements (resent ones,
// unknown ids and bad headers among them) against a reference of each
// balance owner's tokens: the engine's balances never go negative, every
// decision is settled at most once, each Settled is consistent with the
// balance before it, and the balances add up to the start minus what
// was charged, plus what was refunded, minus what extra was covered.
func TestSettleProperty(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 20))
			cfg := settleConfig()
			cfg.PendingMaxAge = 2 * time.Hour
			cfg.Users = map[string]UserConfig{"poor": {Tier: "small"}, "rich": {Credits: 300}}
			e := newEngine(t, cfg)
			subjects := []string{"alice", "poor", "rich", "mate"}
			owner := map[string]string{"alice": "alice", "poor": "poor", "rich": "rich", "mate": "team:crew"}
			model := map[string]int64{"alice": 1000, "poor": 200, "rich": 1300, "team:crew": 5000}
			var ids []uuid.UUID
			settled := map[uuid.UUID]bool{}
			now := t0
			for step := range 600 {
				now = now.Add(time.Duration(rng.IntN(4000)) * time.Millisecond)
				if len(ids) == 0 || rng.IntN(2) == 0 {
					s := subjects[rng.IntN(len(subjects))]
					action := []string{"translate", "llm", "free", "huge"}[rng.IntN(4)]
					d := chargeAt(t, e, now, Request{Subject: s, Action: action, Units: int64(rng.IntN(150))})
					if d.Allowed {
						model[owner[s]] -= d.Charged
						ids = append(ids, d.ID)
					}
					continue
				}
				id := ids[rng.IntN(len(ids))]
				if rng.IntN(10) == 0 {
					id = newDecisionID(now) // unknown here
				}
				st := Settlement{DecisionID: id, Status: []int{0, 200, 201, 404, 500, 503}[rng.IntN(6)]}
				if rng.IntN(2) == 0 {
					st.Headers = map[string]string{"x-usage-tokens": []string{"0", "7", "120", "400", "2000", "-1", "1e2", "99999999999999999999"}[rng.IntN(8)]}
				}
				before := map[string]int64{}
				for k := range model {
					before[k] = status(t, e, now, k).Balance
				}
				r, err := e.SettleAt(context.Background(), st, now)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				switch r.Outcome {
				case SettleDuplicate:
					if !settled[id] {
						t.Fatalf("step %d: %s is a duplicate but was never settled", step, id)
					}
					continue
				case SettleUnmatched, SettleAgedOut:
					if settled[id] {
						t.Fatalf("step %d: settled %s is %v", step, id, r.Outcome)
					}
					continue
				}
				if settled[id] {
					t.Fatalf("step %d: %s settled twice (%v)", step, id, r.Outcome)
				}
				settled[id] = true
				if r.Refunded < 0 || r.Extra < 0 || r.Owed < 0 || r.Owed > r.Extra || (r.Refunded > 0 && r.Extra > 0) {
					t.Fatalf("step %d: inconsistent amounts %+v", step, r)
				}
				if r.Refunded > r.Charged {
					t.Fatalf("step %d: refunded %d of %d charged", step, r.Refunded, r.Charged)
				}
				if want := r.Extra - min(r.Extra, before[r.Owner]); r.Owed != want {
					t.Fatalf("step %d: owed %d with balance %d and extra %d, want %d", step, r.Owed, before[r.Owner], r.Extra, want)
				}
				model[r.Owner] += r.Refunded - (r.Extra - r.Owed)
			}
			for k, want := range model {
				got := status(t, e, now, k).Balance
				if got < 0 || got != want {
					t.Errorf("balance of %s: got %d, want %d", k, got, want)
				}
			}
		})
	}
}

// TestSettleConcurrent settles every decision from several goroutines at
// once, each decision several times: each is settled exactly once, and
// the balance ends where the refunds put it.
func TestSettleConcurrent(t *testing.T) {
	cfg := settleConfig()
	cfg.Users = map[string]UserConfig{}
	e := newEngine(t, cfg)
	var ids []uuid.UUID
	for i := range 90 {
		d := chargeAt(t, e, t0, Request{Subject: "u" + strconv.Itoa(i%3), Action: "translate", Units: 0})
		ids = append(ids, d.ID) // 10 tokens each, 30 per subject
	}
	var mu sync.Mutex
	outcomes := map[SettleOutcome]int{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				r, err := e.SettleAt(context.Background(), Settlement{DecisionID: ids[(i+g*7)%len(ids)], Status: 503}, t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				outcomes[r.Outcome]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if outcomes[SettleRefund] != len(ids) || outcomes[SettleDuplicate] != 3*len(ids) {
		t.Errorf("outcomes %v, want %d refunds and %d duplicates", outcomes, len(ids), 3*len(ids))
	}
	for i := range 3 {
		if b := status(t, e, t0, "u"+strconv.Itoa(i)).Balance; b != 1000 {
			t.Errorf("balance of u%d: %d, want 1000", i, b)
		}
	}
}
