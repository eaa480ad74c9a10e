package redis

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"foo", 12182},        // CLUSTER KEYSLOT foo
		{"123456789", 0x31C3}, // the CRC-16/XMODEM check value
		{"{user1000}.following", int(crc16("user1000") & 16383)},
		{"{}x", int(crc16("{}x") & 16383)}, // an empty tag hashes the whole key
		{"a{b}c}", int(crc16("b") & 16383)},
		{"qg:{a}b}:o:x", int(crc16("a") & 16383)}, // a '}' in a subject id ends the tag
	}
	for _, tc := range tests {
		if got := keySlot(tc.key); got != tc.want {
			t.Errorf("keySlot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	for _, slot := range []int{0, 1, 5000, 12182, 16383} {
		if got := keySlot("{" + slotTag(slot) + "}"); got != slot {
			t.Errorf("slotTag(%d) = %q hashes to %d", slot, slotTag(slot), got)
		}
	}
	s := &Store{opts: Options{}.withDefaults()}
	id := uuid.Must(uuid.NewV7())
	for _, tag := range []string{"alice", "team:ops", "a}b", "{x}"} {
		pid := s.pendingID(tag, id)
		if pid.Version() != 7 || pid.Variant() != uuid.RFC4122 {
			t.Errorf("pendingID(%q) is not a UUIDv7 any more: %s", tag, pid)
		}
		if a, b := keySlot(s.pendingKey(pid)), keySlot(s.stateKey(tag, "x")); a != b {
			t.Errorf("tag %q: the record's slot %d is not the state's %d", tag, a, b)
		}
	}
}

// settleRedisConfig prices "translate" (default rule) and "llm" (refunds
// windows, reads x-usage-tokens), with a grant of 1000 a month, and team
// "ops" (ann, bob) sharing 5000.
func settleRedisConfig() engineConfig {
	cfg := testConfig(100, 1000, 10, 5000)
	cfg.Actions["translate"] = engine.ActionConfig{PerCall: 10, PerThousand: 1000}
	cfg.Actions["llm"] = engine.ActionConfig{PerCall: 10, PerThousand: 1000, Settle: &engine.SettleRule{
		RefundStatuses: []engine.StatusRange{{From: 0, To: 0}, {From: 500, To: 599}}, RefundWindows: true, UsageHeader: "x-usage-tokens"}}
	cfg.Users = map[string]engine.UserConfig{"poor": {Credits: 0}}
	cfg.Tiers["small"] = engine.TierConfig{Limits: cfg.Tiers["free"].Limits, Tokens: engine.TokenGrant{Amount: 200, Period: month}}
	cfg.Users["poor"] = engine.UserConfig{Tier: "small"}
	return cfg
}

// TestSettleOnAnotherReplica decides on one replica and settles on
// another, which shares only Redis, on a server and on a cluster, exact
// and leased: each case's outcome, balance and window are exact, and a
// resent entry on either replica is a duplicate.
func TestSettleOnAnotherReplica(t *testing.T) {
	usage := func(v string) map[string]string { return map[string]string{"x-usage-tokens": v} }
	cases := []struct {
		name        string
		req         engine.Request
		status      int
		headers     map[string]string
		want        engine.SettleOutcome
		refunded    int64
		extra, owed int64
		balance     int64 // the owner's after
		hour        int64 // the subject's "hour" usage after
	}{
		{name: "refund on 503", req: engine.Request{Subject: "alice", Action: "translate", Units: 40}, status: 503,
			want: engine.SettleRefund, refunded: 50, balance: 1000, hour: 1},
		{name: "kept on 200", req: engine.Request{Subject: "alice", Action: "translate", Units: 40}, status: 200,
			want: engine.SettleKept, balance: 950, hour: 1},
		{name: "refund windows", req: engine.Request{Subject: "alice", Action: "llm", Units: 100}, status: 0,
			want: engine.SettleRefund, refunded: 110, balance: 1000, hour: 0},
		{name: "adjust up", req: engine.Request{Subject: "alice", Action: "llm", Units: 100}, status: 200, headers: usage("300"),
			want: engine.SettleAdjust, extra: 200, balance: 690, hour: 1},
		{name: "adjust down", req: engine.Request{Subject: "alice", Action: "llm", Units: 100}, status: 200, headers: usage("20"),
			want: engine.SettleAdjust, refunded: 80, balance: 970, hour: 1},
		{name: "owed", req: engine.Request{Subject: "poor", Action: "llm", Units: 100}, status: 200, headers: usage("500"),
			want: engine.SettleAdjust, extra: 400, owed: 310, balance: 0, hour: 1},
		{name: "team owner", req: engine.Request{Subject: "ann", Action: "translate", Units: 90}, status: 502,
			want: engine.SettleRefund, refunded: 100, balance: 5000, hour: 1},
		{name: "invalid usage", req: engine.Request{Subject: "alice", Action: "llm", Units: 100}, status: 200, headers: usage("1e3"),
			want: engine.SettleInvalid, balance: 890, hour: 1},
	}
	targets := []struct {
		name string
		open func(t *testing.T) target
	}{
		{"server", func(t *testing.T) target { return startServer(t) }},
		{"cluster", func(t *testing.T) target { return sharedCluster(t) }},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			srv := tg.open(t)
			for _, lease := range []int64{0, 10} {
				for _, tc := range cases {
					t.Run(fmt.Sprintf("lease=%d/%s", lease, tc.name), func(t *testing.T) {
						ctx := context.Background()
						opts := Options{Prefix: fresh("settle"), Timeout: 5 * time.Second, Lease: lease}
						engines, _ := replicas(t, srv, opts, settleRedisConfig(), 2)
						a, b := engines[0], engines[1]
						if lease > 0 {
							// A first request takes the blocks, so that the next is
							// served from them and its record is written on its own
							// (the poor subject's blocks would not cover a second).
							warm := tc.req
							if tc.req.Subject == "poor" {
								warm = engine.Request{Subject: "poor"}
							}
							if d, err := a.Charge(ctx, warm); err != nil || !d.Allowed {
								t.Fatalf("warm-up: %v %v", d.Reason, err)
							}
						}
						d, err := a.Charge(ctx, tc.req)
						if err != nil || !d.Allowed {
							t.Fatalf("decision: %v %v", d.Reason, err)
						}
						got, err := b.Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: tc.status, Headers: tc.headers})
						if err != nil {
							t.Fatalf("Settle on the other replica: %v", err)
						}
						// In leased mode the blocks that replicas hold count as
						// spent, so an upward adjustment may find less to take.
						owedOK := got.Owed == tc.owed || (lease > 0 && got.Owed >= tc.owed && got.Owed <= got.Extra)
						if got.Outcome != tc.want || got.Refunded != tc.refunded || got.Extra != tc.extra || !owedOK || got.DecisionID != d.ID {
							t.Errorf("settled %v refunded %d extra %d owed %d; want %v %d %d %d", got.Outcome, got.Refunded, got.Extra, got.Owed,
								tc.want, tc.refunded, tc.extra, tc.owed)
						}
						for i, e := range []*engine.Engine{a, b} {
							if again, err := e.Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: tc.status, Headers: tc.headers}); err != nil || again.Outcome != engine.SettleDuplicate {
								t.Errorf("resent to replica %d: %v, %v; want duplicate", i, again.Outcome, err)
							}
						}
						st, err := b.Status(ctx, tc.req.Subject)
						if err != nil {
							t.Fatal(err)
						}
						if lease > 0 {
							// The balance and windows count the blocks the replicas
							// hold: exactness is checked in exact mode.
							return
						}
						if st.Balance != tc.balance {
							t.Errorf("balance after: %d, want %d", st.Balance, tc.balance)
						}
						for _, l := range st.Limits {
							if l.Name == "hour" && l.Used != tc.hour {
								t.Errorf("hour used after: %d, want %d", l.Used, tc.hour)
							}
						}
					})
				}
			}
		})
	}
}

// TestSettleUnknownOnRedis checks the outcomes of ids Redis never had.
func TestSettleUnknownOnRedis(t *testing.T) {
	srv := startServer(t)
	e := newEngines(t, srv.open(t, Options{Prefix: fresh("unknown"), Timeout: 5 * time.Second}), settleRedisConfig(), 1)[0]
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		id   uuid.UUID
		want engine.SettleOutcome
	}{
		{uuid.Must(uuid.NewV7()), engine.SettleUnmatched},
		{uuid.Nil, engine.SettleUnmatched},
		{oldID(now.Add(-time.Hour)), engine.SettleAgedOut},
	} {
		got, err := e.Settle(ctx, engine.Settlement{DecisionID: tc.id, Status: 503})
		if err != nil || got.Outcome != tc.want {
			t.Errorf("settle %s: %v, %v; want %v", tc.id, got.Outcome, err, tc.want)
		}
	}
}

// oldID is a UUIDv7 of the time at.
func oldID(at time.Time) uuid.UUID {
	id := uuid.Must(uuid.NewV7())
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// BenchmarkSettle measures one settlement through Redis on a replica that
// did not decide (a read of the record, then the settle script), one at
// a time, per outcome: a refund, and a duplicate (one read). The
// decisions are made before the timer starts.
func BenchmarkSettle(b *testing.B) {
	srv := startServer(b)
	for _, name := range []string{"refund", "duplicate"} {
		b.Run(name, func(b *testing.B) {
			cfg := settleRedisConfig()
			cfg.Tiers["free"] = engine.TierConfig{Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 1 << 40}},
				Tokens: engine.TokenGrant{Amount: engine.MaxQuantity, Period: month}}
			cfg.Now = fixedNow()
			prefix := fresh("bsettle")
			var engines []*engine.Engine
			for range 2 {
				st := srv.open(b, Options{Prefix: prefix, Timeout: 5 * time.Second})
				cfg.Authority, cfg.Store = st, st
				e, err := engine.New(cfg.Rules, cfg.Options)
				if err != nil {
					b.Fatal(err)
				}
				engines = append(engines, e)
			}
			ctx := context.Background()
			ids := make([]uuid.UUID, b.N)
			for i := range ids {
				d, err := engines[0].Charge(ctx, engine.Request{Subject: "s" + fmt.Sprint(i%100), Action: "translate", Units: 10})
				if err != nil || !d.Allowed {
					b.Fatal(d.Reason, err)
				}
				ids[i] = d.ID
				if name == "duplicate" {
					if _, err := engines[0].Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: 503}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := engines[1].Settle(ctx, engine.Settlement{DecisionID: ids[i], Status: 503}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSettleRemoteBalanceLow checks that an upward adjustment settled
// through Redis that takes the balance below the alert threshold emits
// EventBalanceLow on the replica that settles, as a charge would.
func TestSettleRemoteBalanceLow(t *testing.T) {
	srv := startServer(t)
	cfg := settleRedisConfig()
	low := &lowCount{}
	cfg.Events = low
	e := newEngines(t, srv.open(t, Options{Prefix: fresh("low"), Timeout: 5 * time.Second}), cfg, 1)[0]
	ctx := context.Background()
	d, err := e.Charge(ctx, engine.Request{Subject: "alice", Action: "llm", Units: 10}) // 20 of 1000
	if err != nil || !d.Allowed {
		t.Fatalf("decision: %v %v", d.Reason, err)
	}
	got, err := e.Settle(ctx, engine.Settlement{DecisionID: d.ID, Status: 200, Headers: map[string]string{"x-usage-tokens": "950"}})
	if err != nil || got.Outcome != engine.SettleAdjust || got.Balance != 40 {
		t.Fatalf("settled %+v, %v; want an adjustment to 40", got, err)
	}
	if n := low.n.Load(); n != 1 {
		t.Errorf("EventBalanceLow after the adjustment: %d, want 1", n)
	}
}

// lowCount counts the EventBalanceLow events it is given.
type lowCount struct{ n atomic.Int64 }

func (l *lowCount) Emit(ev engine.Event) {
	if ev.Kind == engine.EventBalanceLow {
		l.n.Add(1)
	}
}
