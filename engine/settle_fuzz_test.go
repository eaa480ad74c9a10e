package engine

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzSettle runs Charges and Settlements read from ops, two bytes a
// step, with the fuzzed status and usage header, on a small pending table
// (so that records age out and are evicted), and checks that nothing
// errs or panics, no balance goes negative, no decision is settled twice,
// and the balances add up.
func FuzzSettle(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0, 0, 2, 1, 1, 1, 1}, 503, "")
	f.Add([]byte{0, 3, 0, 3, 1, 0, 1, 1, 2, 9}, 200, "400")
	f.Add([]byte{0, 5, 1, 0, 1, 0}, 200, "9223372036854775808")
	f.Add([]byte{0, 7, 0, 7, 0, 7, 2, 200, 1, 2}, 0, "-5")
	f.Fuzz(func(t *testing.T, ops []byte, code int, usage string) {
		if len(ops) > 4000 {
			ops = ops[:4000] // 2000 steps of at most 255 s stay within the month
		}
		cfg := settleConfig()
		cfg.PendingSize = 2 * pendingShards
		cfg.PendingMaxAge = time.Minute
		e := newEngine(t, cfg)
		ctx := context.Background()
		subjects := []string{"alice", "poor", "mate"}
		owner := map[string]string{"alice": "alice", "poor": "poor", "mate": "team:crew"}
		model := map[string]int64{"alice": 1000, "poor": 200, "team:crew": 5000}
		actions := []string{"translate", "llm", "free", "huge"}
		var ids []uuid.UUID
		settled := map[uuid.UUID]bool{}
		now := t0
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%3, ops[i+1]
			switch op {
			case 0:
				s := subjects[int(arg)%len(subjects)]
				d, err := e.ChargeAt(ctx, now, Request{Subject: s, Action: actions[int(arg>>2)%len(actions)], Units: int64(arg)})
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					model[owner[s]] -= d.Charged
					ids = append(ids, d.ID)
				}
			case 1:
				if len(ids) == 0 {
					continue
				}
				id := ids[int(arg)%len(ids)]
				h := map[string]string{"x-usage-tokens": usage}
				if arg&0x80 != 0 {
					h = nil
				}
				r, err := e.SettleAt(ctx, Settlement{DecisionID: id, Status: code, Headers: h}, now)
				if err != nil {
					t.Fatal(err)
				}
				switch r.Outcome {
				case SettleDuplicate, SettleUnmatched, SettleAgedOut:
					// A settled id is remembered for PendingMaxAge, unless the
					// table's size drops it first: then it is aged out.
					if r.Outcome == SettleUnmatched && settled[id] {
						t.Fatalf("settled %s is %v", id, r.Outcome)
					}
					continue
				}
				if settled[id] {
					t.Fatalf("%s settled twice", id)
				}
				settled[id] = true
				if r.Refunded < 0 || r.Extra < 0 || r.Owed < 0 || r.Owed > r.Extra || r.Balance < 0 {
					t.Fatalf("inconsistent %+v", r)
				}
				model[r.Owner] += r.Refunded - (r.Extra - r.Owed)
			case 2:
				now = now.Add(time.Duration(arg) * time.Second)
			}
		}
		for k, want := range model {
			if got := status(t, e, now, k).Balance; got < 0 || got != want {
				t.Errorf("balance of %s: got %d, want %d", k, got, want)
			}
		}
	})
}
