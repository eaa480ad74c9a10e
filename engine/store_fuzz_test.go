package engine

import (
	"context"
	"fmt"
	"testing"
)

// FuzzMemoryStore runs a sequence of saves, forgets and sweeps, read from
// the input two bytes at a time, against a map that models what the store
// must hold, and checks after every step that the store holds exactly
// that and that its sweep cursor's index is consistent.
func FuzzMemoryStore(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 1, 2, 3, 0, 9, 2, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 2, 0, 3, 2, 255, 2, 255, 1, 0, 0, 0})
	f.Add([]byte("\x00\x05\x00\x15\x00\x25\x02\x02\x01\x05\x02\x07\x00\x35"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		ctx := context.Background()
		m := NewMemoryStore()
		model := map[string]uint64{}
		versions := map[string]uint64{}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%3, ops[i+1]
			key := fmt.Sprintf("k%d", arg%16)
			switch op {
			case 0: // save the next version, or a stale one every fourth time
				v := versions[key] + 1
				if arg&0x30 == 0x30 && v > 1 {
					v -= 2
				}
				versions[key] = max(versions[key], v)
				if err := m.Save(ctx, []Snapshot{{Key: key, Version: v}}); err != nil {
					t.Fatal(err)
				}
				if cur, ok := model[key]; !ok || v > cur {
					model[key] = v
				}
			case 1: // forget up to a version near the stored one
				v := model[key]
				if arg&0x10 != 0 && v > 0 {
					v--
				}
				if err := m.Forget(ctx, []KeyVersion{{Key: key, Version: v}}); err != nil {
					t.Fatal(err)
				}
				if cur, ok := model[key]; ok && cur <= v {
					delete(model, key)
				}
			case 2: // sweep some states, dropping the odd versions
				visited, dropped := m.Sweep(int(arg%8), func(s *Snapshot) bool { return s.Version%2 == 1 })
				if visited > int(arg%8) || dropped > visited {
					t.Fatalf("Sweep(%d) visited %d, dropped %d", arg%8, visited, dropped)
				}
				for k := range model {
					if _, ok, _ := m.Load(ctx, k); !ok {
						delete(model, k) // swept
					}
				}
			}
			checkMemoryStore(t, m, model)
		}
		// A full sweep drops every odd version and nothing else. A drop
		// moves the last state into the cursor's place, which may be one
		// the sweep already saw after wrapping around, so a full pass may
		// take up to one more visit per drop: 2n visits always suffice.
		m.Sweep(2*len(model)+1, func(s *Snapshot) bool { return s.Version%2 == 1 })
		for k, v := range model {
			if v%2 == 1 {
				delete(model, k)
			}
		}
		checkMemoryStore(t, m, model)
	})
}

// checkMemoryStore fails unless m holds exactly model's keys and versions,
// with its key index consistent.
func checkMemoryStore(t *testing.T, m *MemoryStore, model map[string]uint64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.snaps) != len(model) || len(m.keys) != len(model) {
		t.Fatalf("store holds %d states (%d keys indexed), model %d", len(m.snaps), len(m.keys), len(model))
	}
	for k, v := range model {
		me, ok := m.snaps[k]
		if !ok || me.snap.Version != v {
			t.Fatalf("store has %s = %+v, model version %d", k, me, v)
		}
		if me.at >= len(m.keys) || m.keys[me.at] != k {
			t.Fatalf("index of %s is %d, which holds another key", k, me.at)
		}
	}
}
