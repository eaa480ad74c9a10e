package engine

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
)

// TestPendingIndex inserts and removes random ids, many in clusters (ids
// whose random halves differ only in bytes the hash sees last), against a
// map, and checks after each step that every id is found or not.
func TestPendingIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x pendingIndex
	x.init(64)
	var recs pendingSlab
	model := map[uuid.UUID]int32{}
	var ids []uuid.UUID
	for step := range 20_000 {
		if len(model) < 64 && (len(ids) == 0 || rng.IntN(3) > 0) {
			var id uuid.UUID
			for i := range id {
				id[i] = byte(rng.UintN(256))
			}
			if rng.IntN(2) == 0 && len(ids) > 0 {
				id = ids[rng.IntN(len(ids))]
				id[15] ^= byte(1 + rng.UintN(255))
			}
			if _, dup := model[id]; dup {
				continue
			}
			idx := recs.add(&pendingRec{id: id})
			x.insert(id, idx)
			model[id] = idx
			ids = append(ids, id)
		} else {
			k := rng.IntN(len(ids))
			id := ids[k]
			ids[k] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			x.remove(id, &recs)
			delete(model, id)
		}
		for id, idx := range model {
			if got, ok := x.find(id, &recs); !ok || got != idx {
				t.Fatalf("step %d: find(%s) = %d, %v; want %d", step, id, got, ok, idx)
			}
		}
		used := 0
		for _, v := range x.slots {
			if v != 0 {
				used++
			}
		}
		if used != len(model) {
			t.Fatalf("step %d: %d slots used for %d ids", step, used, len(model))
		}
	}
}

// TestPendingQueueOrder checks that records age out in order and that a
// settled record is remembered for the maximum age after its settlement.
func TestPendingQueueOrder(t *testing.T) {
	tab := newPendingTable(1000, time.Minute, false)
	at := t0.UnixNano()
	var ids []uuid.UUID
	for i := range 50 {
		now := at + int64(i)*int64(time.Second)
		id := newDecisionID(time.Unix(0, now))
		ids = append(ids, id)
		tab.put(&pendingRec{id: id, at: now, expires: now + int64(time.Minute)}, now)
	}
	if _, out, ok := tab.claim(ids[0], at+int64(30*time.Second)); !ok {
		t.Fatalf("claim of a live record: %v", out)
	}
	tab.settled(ids[0], at+int64(30*time.Second), false)
	late := at + int64(75*time.Second) // ids[0..15] expired, but ids[0] was settled at 30s
	if _, out, _ := tab.claim(ids[0], late); out != SettleDuplicate {
		t.Errorf("settled id within the age after its settlement: %v, want duplicate", out)
	}
	if _, out, _ := tab.claim(ids[5], late); out != SettleAgedOut {
		t.Errorf("expired id: %v, want aged_out", out)
	}
	if _, _, ok := tab.claim(ids[20], late); !ok {
		t.Errorf("live id not claimed")
	}
	if s := tab.stats(late); s.AgedOut != 15 || s.Held != 50-16-1 {
		t.Errorf("stats %+v, want 15 aged out and 33 held", s)
	}
}

// TestRequestsShareTheCachedSubject: what outlives a request (its pending
// record, its decision) holds the subject as the state's cache has it, and
// a configured action and workflow as the rules have them, not the
// request's own copies, so that a table of pending decisions holds one
// string per subject and not one per request for the collector to mark.
func TestRequestsShareTheCachedSubject(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	cfg := settleBenchConfig(func() time.Time { return t0 }, 16)
	cfg.Workflows = map[string]WorkflowConfig{"etl": {}}
	e, err := newFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs := e.rules.Load()
	first := strings.Clone("alice")
	for i := range 3 {
		req := Request{Subject: strings.Clone("alice"), Action: strings.Clone("priced"), Workflow: strings.Clone("etl"), Units: 1}
		if i == 0 {
			req.Subject = first
		}
		d, err := e.Charge(context.Background(), req)
		if err != nil || !d.Allowed {
			t.Fatalf("Charge %d = %+v, %v", i, d, err)
		}
		p := e.pending.part(d.ID)
		idx, ok := p.byID.find(d.ID, &p.recs)
		if !ok {
			t.Fatalf("Charge %d: no pending record", i)
		}
		if got := p.recs.at(idx).subject; got != "alice" || unsafe.StringData(got) != unsafe.StringData(first) {
			t.Errorf("Charge %d: the pending record holds its request's copy of %q, not the cached one", i, got)
		}
		if unsafe.StringData(d.Subject) != unsafe.StringData(first) {
			t.Errorf("Charge %d: the decision holds its request's copy of the subject", i)
		}
		r := p.recs.at(idx)
		if unsafe.StringData(r.action) != unsafe.StringData(rs.declared["priced"]) || unsafe.StringData(d.Action) != unsafe.StringData(r.action) {
			t.Errorf("Charge %d: the record or decision holds its request's copy of the action", i)
		}
		if unsafe.StringData(r.workflow) != unsafe.StringData(rs.workflows["etl"].name) || unsafe.StringData(d.Workflow) != unsafe.StringData(r.workflow) {
			t.Errorf("Charge %d: the record or decision holds its request's copy of the workflow", i)
		}
	}
}
