package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// pendingCases hold an engine.PendingStore to its contract.
var pendingCases = []suiteCase{
	{name: "pending round trip", run: testPendingRoundTrip},
	{name: "pending settled replaces open", run: testPendingSettled},
	{name: "pending dropped and expired", run: testPendingExpiry},
	{name: "pending saved with snapshots", run: testPendingWithSnapshots},
}

func fullPending(n byte, state engine.PendingState) engine.PendingRecord {
	id := uuid.UUID{0x01, 0x9c, n, 0, 0, 0, 0x70, 0, 0x80, n, 1, 2, 3, 4, 5, n}
	return engine.PendingRecord{
		ID: id, State: state, DecidedAt: t0, Expires: t0.Add(15 * time.Minute),
		Subject: "alice ünïcode", Team: "ops", Owner: "team:ops", Tier: "enterprise",
		Action: "translate", Workflow: "nightly", Units: 1 << 40, Charged: engine.MaxQuantity,
		FromAllowance: 7, FromCredits: engine.MaxQuantity - 7, GrantStart: t0.AddDate(0, 0, -3),
		Windows: []engine.PendingWindow{{Owner: "alice ünïcode", Limit: "hour", Start: t0.Truncate(time.Hour), Amount: 1},
			{Owner: "team:ops", Limit: "team:day", Start: t0.Add(-time.Hour), Amount: 1 << 50}},
		Trace: engine.TraceRef{TraceID: [16]byte{1, 2, 3, 255}, SpanID: [8]byte{9, 8, 7}, Sampled: true},
	}
}

func pendingStore(t *testing.T, s engine.Store) engine.PendingStore {
	t.Helper()
	ps, ok := s.(engine.PendingStore)
	if !ok {
		t.Fatalf("%T is not an engine.PendingStore", s)
	}
	return ps
}

func savePending(t *testing.T, ps engine.PendingStore, snaps []engine.Snapshot, now time.Time, recs ...engine.PendingRecord) {
	t.Helper()
	if err := ps.SavePending(context.Background(), snaps, recs, now); err != nil {
		t.Fatalf("SavePending: %v", err)
	}
}

// loadPending returns the records that expire after now, by id.
func loadPending(t *testing.T, ps engine.PendingStore, now time.Time) map[uuid.UUID]engine.PendingRecord {
	t.Helper()
	recs, err := ps.LoadPending(context.Background(), now)
	if err != nil {
		t.Fatalf("LoadPending: %v", err)
	}
	out := map[uuid.UUID]engine.PendingRecord{}
	for _, r := range recs {
		if _, dup := out[r.ID]; dup {
			t.Fatalf("LoadPending returned %s twice", r.ID)
		}
		out[r.ID] = normalizePending(r)
	}
	return out
}

// normalizePending makes records comparable: instants in UTC.
func normalizePending(r engine.PendingRecord) engine.PendingRecord {
	r.DecidedAt, r.Expires, r.GrantStart = r.DecidedAt.UTC(), r.Expires.UTC(), r.GrantStart.UTC()
	ws := make([]engine.PendingWindow, len(r.Windows))
	for i, w := range r.Windows {
		w.Start = w.Start.UTC()
		ws[i] = w
	}
	r.Windows = ws
	return r
}

func testPendingRoundTrip(t *testing.T, s engine.Store) {
	ps := pendingStore(t, s)
	open, settled := fullPending(1, engine.PendingOpen), fullPending(2, engine.PendingSettled)
	settled.Windows = nil
	savePending(t, ps, nil, t0, open, settled)
	got := loadPending(t, ps, t0)
	for _, want := range []engine.PendingRecord{open, settled} {
		if g := got[want.ID]; !reflect.DeepEqual(g, normalizePending(want)) {
			t.Errorf("record %s:\n got %+v\nwant %+v", want.ID, g, normalizePending(want))
		}
	}
	if len(got) != 2 {
		t.Errorf("loaded %d records, want 2", len(got))
	}
}

func testPendingSettled(t *testing.T, s engine.Store) {
	ps := pendingStore(t, s)
	open := fullPending(3, engine.PendingOpen)
	savePending(t, ps, nil, t0, open)
	mark := engine.PendingRecord{ID: open.ID, State: engine.PendingSettled, DecidedAt: open.DecidedAt, Expires: t0.Add(time.Hour)}
	savePending(t, ps, nil, t0, mark)
	savePending(t, ps, nil, t0, open) // an older save landing late
	got := loadPending(t, ps, t0)
	if len(got) != 1 || got[open.ID].State != engine.PendingSettled || !got[open.ID].Expires.Equal(mark.Expires) {
		t.Fatalf("after settling: %+v, want the settled mark alone", got)
	}
	// Landing late after the open record expired, it still leaves the
	// mark; once the mark has expired, a new open record is kept.
	late := t0.Add(20 * time.Minute)
	savePending(t, ps, nil, late, open)
	if got := loadPending(t, ps, late); len(got) != 1 || got[open.ID].State != engine.PendingSettled {
		t.Fatalf("after an expired open record landed late: %+v, want the settled mark alone", got)
	}
	again := open
	again.Expires = mark.Expires.Add(time.Hour)
	savePending(t, ps, nil, mark.Expires, again)
	if got := loadPending(t, ps, mark.Expires); len(got) != 1 || got[open.ID].State != engine.PendingOpen {
		t.Fatalf("after the mark expired: %+v, want the new open record", got)
	}
}

func testPendingExpiry(t *testing.T, s engine.Store) {
	ps := pendingStore(t, s)
	a, b, c := fullPending(4, engine.PendingOpen), fullPending(5, engine.PendingOpen), fullPending(6, engine.PendingSettled)
	b.Expires = t0.Add(time.Minute)
	savePending(t, ps, nil, t0, a, b, c)
	savePending(t, ps, nil, t0, engine.PendingRecord{ID: c.ID, State: engine.PendingDropped})
	if got := loadPending(t, ps, t0); len(got) != 2 || got[c.ID].ID == c.ID {
		t.Fatalf("after dropping %s: %d records %v", c.ID, len(got), got)
	}
	if got := loadPending(t, ps, t0.Add(time.Minute)); len(got) != 1 || got[a.ID].ID != a.ID {
		t.Fatalf("at b's expiry: %v, want a alone", got)
	}
	// A save well after b's expiry deletes it; a alone is left.
	savePending(t, ps, nil, t0.Add(10*time.Minute), fullPending(7, engine.PendingOpen))
	if got := loadPending(t, ps, t0); len(got) != 2 || got[b.ID].ID == b.ID {
		t.Fatalf("after a later save: %v, want b deleted", got)
	}
}

func testPendingWithSnapshots(t *testing.T, s engine.Store) {
	ps := pendingStore(t, s)
	snap := fullSnapshot("with-pending", 3)
	rec := fullPending(8, engine.PendingOpen)
	savePending(t, ps, []engine.Snapshot{snap}, t0, rec)
	mustLoad(t, s, snap)
	if got := loadPending(t, ps, t0); len(got) != 1 {
		t.Fatalf("records after saving with a snapshot: %v", got)
	}
	bad := rec
	bad.ID = uuid.Nil
	if err := ps.SavePending(context.Background(), []engine.Snapshot{fullSnapshot("refused", 1)}, []engine.PendingRecord{bad}, t0); err == nil {
		t.Fatal("SavePending accepted a record without an id")
	}
	if _, ok, _ := s.Load(context.Background(), "refused"); ok {
		t.Error("a refused SavePending saved its snapshot")
	}
}
