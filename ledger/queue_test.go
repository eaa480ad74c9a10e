package ledger

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestQueueMatchesModel runs random pushes and takes against a plain
// slice: the same records come out, in order, the bound refuses exactly
// when max wait, and the length agrees throughout.
func TestQueueMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		max := 1 + rng.IntN(3*chunkLen)
		q := &queue{max: max}
		var model []string
		next := 0
		for op := range 2000 {
			if rng.IntN(3) > 0 {
				for range rng.IntN(chunkLen) {
					r := Record{Subject: "u" + strconv.Itoa(next)}
					n, ok := q.push(r)
					if ok != (len(model) < max) {
						t.Fatalf("seed %d op %d: push with %d of %d waiting reported %v", seed, op, len(model), max, ok)
					}
					if ok {
						model = append(model, r.Subject)
						next++
						if n != len(model) {
							t.Fatalf("seed %d op %d: push returned %d waiting, want %d", seed, op, n, len(model))
						}
					}
				}
			} else {
				k := rng.IntN(2 * chunkLen)
				out := q.take([]Record{{Subject: "kept"}}, k)
				want := model[:min(k, len(model))]
				if len(out) != 1+len(want) || out[0].Subject != "kept" {
					t.Fatalf("seed %d op %d: take(%d) returned %d records, want %d after the one passed in", seed, op, k, len(out)-1, len(want))
				}
				for i, w := range want {
					if out[1+i].Subject != w {
						t.Fatalf("seed %d op %d: record %d is %q, want %q", seed, op, i, out[1+i].Subject, w)
					}
				}
				model = model[len(want):]
			}
			if q.len() != len(model) {
				t.Fatalf("seed %d op %d: len %d, want %d", seed, op, q.len(), len(model))
			}
			if len(q.free) > keepChunks {
				t.Fatalf("seed %d op %d: %d free chunks kept, want at most %d", seed, op, len(q.free), keepChunks)
			}
		}
	}
}

// TestQueueLetsGoOfTakenRecords: a taken slot no longer holds the record's
// strings, and a drained queue holds one chunk at most, however large the
// burst before it.
func TestQueueLetsGoOfTakenRecords(t *testing.T) {
	q := &queue{max: 1 << 16}
	for i := range 40 * chunkLen {
		if _, ok := q.push(Record{Subject: "u" + strconv.Itoa(i)}); !ok {
			t.Fatalf("push %d refused", i)
		}
	}
	if len(q.chunks) != 40 {
		t.Fatalf("%d chunks for %d records, want 40", len(q.chunks), 40*chunkLen)
	}
	out := q.take(nil, 1<<20)
	if len(out) != 40*chunkLen || out[len(out)-1].Subject != "u"+strconv.Itoa(40*chunkLen-1) {
		t.Fatalf("took %d records, want all %d in order", len(out), 40*chunkLen)
	}
	if len(q.chunks) != 1 || len(q.free) != keepChunks || q.len() != 0 {
		t.Fatalf("drained queue holds %d chunks and %d free, want 1 and %d", len(q.chunks), len(q.free), keepChunks)
	}
	for _, c := range append(q.chunks, q.free...) {
		for i := range c.recs {
			if c.recs[i].Subject != "" {
				t.Fatalf("a taken slot still holds %q", c.recs[i].Subject)
			}
		}
	}
}
