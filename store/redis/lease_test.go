package redis

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// replicas returns n engines, each with its own Store (its own blocks) on
// srv, as n quotagate processes would have.
func replicas(t *testing.T, srv target, opts Options, cfg engineConfig, n int) ([]*engine.Engine, []*Store) {
	t.Helper()
	engines := make([]*engine.Engine, n)
	stores := make([]*Store, n)
	for i := range n {
		stores[i] = srv.open(t, opts)
		engines[i] = newEngines(t, stores[i], cfg, 1)[0]
	}
	return engines, stores
}

func TestLeasedNeverOverLimit(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name  string
		cfg   engineConfig
		req   func(round int) engine.Request
		limit int64
	}{
		{name: "window limit", cfg: testConfig(25, 0, 0, 0), limit: 25,
			req: func(round int) engine.Request { return engine.Request{Subject: fmt.Sprintf("lw%d", round)} }},
		{name: "balance", cfg: testConfig(1000, 100, 7, 0), limit: 100 / 7,
			req: func(round int) engine.Request {
				return engine.Request{Subject: fmt.Sprintf("lb%d", round), Action: "translate"}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 10 {
				opts := Options{Prefix: fmt.Sprintf("lease%d", round), Lease: 4, Timeout: 5e9}
				engines, _ := replicas(t, srv, opts, tc.cfg, 3)
				got := hammer(t, engines, func(int) engine.Request { return tc.req(round) })
				if got > tc.limit || got == 0 {
					t.Fatalf("round %d: admitted %d of 64; want at most %d", round, got, tc.limit)
				}
			}
		})
	}
}

func TestLeasedErrorBound(t *testing.T) {
	const limit, block, n = 25, 4, 3
	tests := []struct {
		name string
		reqs int
	}{
		{name: "limit reached", reqs: 40},
		{name: "under the limit", reqs: 12},
	}
	srv := startServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			engines, stores := replicas(t, srv, Options{Prefix: "bound" + tc.name, Lease: block}, testConfig(limit, 0, 0, 0), n)
			var admitted int64
			for i := range tc.reqs {
				d, err := engines[i%n].Charge(context.Background(), engine.Request{Subject: "lee"})
				if err != nil {
					t.Fatalf("Charge %d: %v", i, err)
				}
				if d.Allowed {
					admitted++
				}
			}
			// Blocks held unused by the other replicas are refused early:
			// at most block-1 units each. Nothing is ever admitted over.
			want := min(int64(tc.reqs), limit)
			if admitted > want || admitted < want-(n-1)*(block-1) {
				t.Fatalf("admitted %d of %d, want between %d and %d", admitted, tc.reqs, want-(n-1)*(block-1), want)
			}
			var trips uint64
			for _, st := range stores {
				trips += st.Stats().Calls - st.Stats().Profiles - st.Stats().Loads
			}
			if trips*2 > uint64(tc.reqs) {
				t.Fatalf("%d round trips for %d requests, want at most half with blocks of %d", trips, tc.reqs, block)
			}
		})
	}
}

func TestLeaseEndsWithWindow(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{Lease: 4})
	now := time.Now()
	cfg := testConfig(5, 0, 0, 0)
	cfg.Authority, cfg.Now = st, func() time.Time { return now }
	e, err := engine.New(cfg.Rules, cfg.Options)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name  string
		at    time.Time
		trips uint64 // round trips so far
	}{
		{name: "first call reserves a block", at: now, trips: 1},
		{name: "second call uses it", at: now, trips: 1},
		{name: "next window needs a new block", at: now.Add(time.Hour), trips: 2},
		{name: "which serves the next call", at: now.Add(time.Hour), trips: 2},
	}
	for _, s := range steps {
		now = s.at
		d, err := e.Charge(ctx, engine.Request{Subject: "lou"})
		if err != nil || !d.Allowed {
			t.Fatalf("%s: Charge = %v, %v; want allowed", s.name, d.Reason, err)
		}
		if got := st.Stats().Calls - st.Stats().Profiles - st.Stats().Loads; got != s.trips {
			t.Fatalf("%s: %d round trips, want %d", s.name, got, s.trips)
		}
	}
}

func TestLeasedBalanceBound(t *testing.T) {
	const tokens, cost, block, n = 100, 7, 4, 3
	tests := []struct {
		name  string
		reqs  int
		trips uint64 // round trips at most, all replicas
	}{
		// Once the balance is spent, each refusal is a round trip.
		{name: "balance spent", reqs: 40, trips: 40},
		// One block per replica serves it all.
		{name: "balance left", reqs: 9, trips: n},
	}
	srv := startServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "lbb" + strconv.Itoa(tc.reqs)
			// The round trips bounded here are the lease's: an action held
			// for settlement adds a record per Check served from a block
			// (see TestSettleOnAnotherReplica), so this one settles nothing.
			cfg := testConfig(1000, tokens, cost, 0)
			cfg.Actions["translate"] = engine.ActionConfig{PerCall: cost, Settle: &engine.SettleRule{Off: true}}
			engines, stores := replicas(t, srv, Options{Prefix: prefix, Lease: block}, cfg, n)
			var admitted int64
			for i := range tc.reqs {
				d, err := engines[i%n].Charge(context.Background(), engine.Request{Subject: "lia", Action: "translate"})
				if err != nil {
					t.Fatalf("Charge %d: %v", i, err)
				}
				if d.Allowed {
					admitted++
				}
			}
			// Never over: blocks are taken from the allowance in Redis at
			// once. Early refusals: at most block-1 requests' worth held
			// unused by each other replica.
			want := min(int64(tc.reqs), tokens/cost)
			if admitted > want || admitted < want-(n-1)*(block-1) {
				t.Fatalf("admitted %d of %d, want between %d and %d", admitted, tc.reqs, want-(n-1)*(block-1), want)
			}
			h, err := srv.client(t).HGetAll(context.Background(), prefix+":{lia}:o:lia").Result()
			if err != nil {
				t.Fatalf("HGETALL: %v", err)
			}
			if a, _ := strconv.Atoi(h["a"]); a < 0 || h["c"] != "0" {
				t.Fatalf("balance in Redis = %v, want allowance >= 0 and no credits spent", h)
			}
			var trips uint64
			for _, st := range stores {
				trips += st.Stats().Calls - st.Stats().Profiles - st.Stats().Loads
			}
			if trips > tc.trips {
				t.Fatalf("%d round trips for %d requests, want at most %d with blocks of %d", trips, tc.reqs, tc.trips, block)
			}
		})
	}
}
