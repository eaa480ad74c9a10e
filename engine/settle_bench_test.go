package engine

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// settleBenchConfig prices "off" (settlement off), "priced" (the default
// rule) and "windows" (refunds windows, reads a usage header).
func settleBenchConfig(now func() time.Time, pending int) testConfig {
	cfg := benchConfig(0, 1<<16, now)
	cfg.Tiers["standard"] = TierConfig{Priority: PriorityMedium, Limits: cfg.Tiers["standard"].Limits,
		Tokens: TokenGrant{Amount: MaxQuantity, Period: Period{Calendar: "month", Every: 30 * 24 * time.Hour}}}
	cfg.Actions = map[string]ActionConfig{
		"off":    {PerCall: 1, Settle: &SettleRule{Off: true}},
		"priced": {PerCall: 1, PerThousand: 1000},
		"windows": {PerCall: 1, PerThousand: 1000, Settle: &SettleRule{RefundStatuses: []StatusRange{{500, 599}},
			RefundWindows: true, UsageHeader: "x-usage-tokens"}},
	}
	cfg.PendingSize = pending
	return cfg
}

// BenchmarkChargeSettle measures parallel Charge on 10 000 cached
// subjects by the settlement the action's rule asks for: none (off, the
// cost of Charge without a pending record), the default rule (a record),
// and window refunds (a record and its list of windows).
func BenchmarkChargeSettle(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0 }
	subjects := benchSubjects(10_000)
	for _, action := range []string{"off", "priced", "windows"} {
		b.Run("settle="+action, func(b *testing.B) {
			e, err := newFrom(settleBenchConfig(now, 100_000))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for _, s := range subjects {
				if _, err := e.Charge(ctx, Request{Subject: s, Action: action, Units: 10}); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := e.Charge(ctx, Request{Subject: subjects[i%len(subjects)], Action: action, Units: 10}); err != nil {
						b.Fatal(err)
					}
					i += 7919
				}
			})
		})
	}
}

// BenchmarkSettle measures the CPU of one settlement in memory, per
// outcome: a refund (of the balance, and of the windows too), an
// adjustment from the usage header, a duplicate and an unknown id. The
// decisions are made before the timer starts.
func BenchmarkSettle(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0 }
	cases := []struct {
		name, action string
		s            Settlement
	}{
		{"refund", "priced", Settlement{Status: 503}},
		{"refund-windows", "windows", Settlement{Status: 503}},
		{"adjust", "windows", Settlement{Status: 200, Headers: map[string]string{"x-usage-tokens": "250"}}},
		{"kept", "priced", Settlement{Status: 200}},
		{"duplicate", "priced", Settlement{Status: 503}},
		{"unmatched", "", Settlement{Status: 503}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			e, err := newFrom(settleBenchConfig(now, max(b.N, 1)+1024))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			ids := make([]uuid.UUID, b.N)
			for i := range ids {
				if tc.action == "" {
					ids[i] = newDecisionID(t0)
					continue
				}
				d, err := e.Charge(ctx, Request{Subject: "user-" + strconv.Itoa(i%10_000), Action: tc.action, Units: 100})
				if err != nil || !d.Allowed {
					b.Fatal(d.Reason, err)
				}
				ids[i] = d.ID
				if tc.name == "duplicate" {
					if _, err := e.Settle(ctx, Settlement{DecisionID: d.ID, Status: 503}); err != nil {
						b.Fatal(err)
					}
				}
			}
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				s := tc.s
				s.DecisionID = ids[i]
				if _, err := e.Settle(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPendingMemory reports the heap one pending decision holds
// (B/pending), and the objects (objects/pending: what a garbage
// collection marks): 100 000 decisions of the default rule fill the
// table.
// Run it with -benchtime 1x.
func BenchmarkPendingMemory(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	const n = 100_000
	for b.Loop() {
		// Twice the room: the parts fill unevenly, and none must evict.
		e, err := newFrom(settleBenchConfig(func() time.Time { return t0 }, 2*n))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		subjects := benchSubjects(1000)
		for _, s := range subjects { // the states, before the baseline
			if _, err := e.Charge(ctx, Request{Subject: s, Action: "off"}); err != nil {
				b.Fatal(err)
			}
		}
		base, baseObjects := heapLive()
		for i := range n {
			// Each request's own copy of the subject, as a decoded Check has.
			subject := strings.Clone(subjects[i%len(subjects)])
			if _, err := e.Charge(ctx, Request{Subject: subject, Action: "priced", Units: 1}); err != nil {
				b.Fatal(err)
			}
		}
		used, objects := heapLive()
		if held := e.PendingStats().Held; held != n {
			b.Fatalf("held %d, want %d", held, n)
		}
		b.ReportMetric(float64(used-base)/n, "B/pending")
		b.ReportMetric(float64(objects-baseObjects)/n, "objects/pending")
		runtime.KeepAlive(e)
	}
}

// newFrom is New for a testConfig.
func newFrom(c testConfig) (*Engine, error) { return New(c.Rules, c.Options) }
