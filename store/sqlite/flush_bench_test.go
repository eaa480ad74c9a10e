package sqlite

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// BenchmarkPendingFlush is one engine flush of the load benchmark with
// settlement on and no access log: 1 000 subjects' snapshots, 1 000 new
// open decisions and the 1 000 oldest dropped for the table's size, in
// one transaction over a table already at 100 000 records.
func BenchmarkPendingFlush(b *testing.B) {
	const perFlush, held = 1000, 100_000
	s := openTemp(b, Options{})
	ctx := context.Background()
	at := time.Now().UTC()
	seq := 0
	id := func(n int) uuid.UUID {
		var u uuid.UUID
		binary.BigEndian.PutUint64(u[0:8], uint64(at.UnixMilli()+int64(n))<<16|0x7000)
		binary.BigEndian.PutUint64(u[8:16], uint64(n)*0x9e3779b97f4a7c15)
		u[8] = u[8]&0x3f | 0x80
		return u
	}
	open := func(n int) engine.PendingRecord {
		t := at.Add(time.Duration(n) * time.Millisecond)
		return engine.PendingRecord{ID: id(n), State: engine.PendingOpen, DecidedAt: t, Expires: t.Add(5 * time.Minute),
			Subject: fmt.Sprintf("user-%05d", n%10000), Tier: "standard", Action: "translate",
			Units: 300, Charged: 2, FromAllowance: 2, GrantStart: at}
	}
	recs := make([]engine.PendingRecord, 0, 2*perFlush)
	for seq < held {
		recs = recs[:0]
		for range perFlush {
			recs = append(recs, open(seq))
			seq++
		}
		if err := s.SavePending(ctx, nil, recs, at); err != nil {
			b.Fatal(err)
		}
	}
	snaps := make([]engine.Snapshot, perFlush)
	b.ReportAllocs()
	for b.Loop() {
		recs = recs[:0]
		for j := range perFlush {
			recs = append(recs, open(seq), engine.PendingRecord{ID: id(seq - held), State: engine.PendingDropped})
			snaps[j] = engine.Snapshot{Key: fmt.Sprintf("user-%05d", seq%10000), Version: uint64(seq), Allowance: int64(seq),
				AllowancePeriod: at, Windows: []engine.WindowSnapshot{
					{Name: "api_calls_per_minute", Start: at, Current: 3},
					{Name: "api_calls_per_hour", Start: at, Current: 30},
				}}
			seq++
		}
		if err := s.SavePending(ctx, snaps, recs, at); err != nil {
			b.Fatal(err)
		}
	}
}
