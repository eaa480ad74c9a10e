package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/storetest"
)

var (
	hour  = engine.Period{Calendar: "hour", Every: time.Hour}
	month = engine.Period{Calendar: "month", Every: 30 * 24 * time.Hour}
)

// fixedNow is a clock in the present (so the counters' expiries lie in the
// future) that does not move during a test.
func fixedNow() func() time.Time {
	now := time.Now().Truncate(time.Second)
	return func() time.Time { return now }
}

// testConfig is one tier "free" with an hourly limit of max calls, a grant
// of tokens per month (0: none), the action "translate" costing cost, and
// team "ops" (members ann and bob) sharing teamTokens (0: no team).
func testConfig(max, tokens, cost, teamTokens int64) engine.Config {
	cfg := engine.Config{
		Tiers: map[engine.Tier]engine.TierConfig{"free": {
			Limits:      []engine.LimitConfig{{Name: "hour", Period: hour, Max: max}},
			Tokens:      engine.TokenGrant{Amount: tokens, Period: month},
			FailureMode: engine.FailOpen,
		}},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: cost}},
	}
	if teamTokens > 0 {
		cfg.Teams = map[string]engine.TeamConfig{"ops": {Members: []string{"ann", "bob"},
			Tokens: engine.TokenGrant{Amount: teamTokens, Period: month}}}
	}
	return cfg
}

// newEngines returns n engines sharing st as their authority, all at one
// fixed time.
func newEngines(t *testing.T, st *Store, cfg engine.Config, n int) []*engine.Engine {
	t.Helper()
	cfg.Authority, cfg.Now = st, fixedNow()
	out := make([]*engine.Engine, n)
	for i := range out {
		e, err := engine.New(cfg)
		if err != nil {
			t.Fatalf("engine.New: %v", err)
		}
		out[i] = e
	}
	return out
}

// hammer sends 64 concurrent requests, spread over engines, and returns
// how many were admitted.
func hammer(t *testing.T, engines []*engine.Engine, req func(i int) engine.Request) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			d, err := engines[i%len(engines)].Charge(context.Background(), req(i))
			if err != nil {
				t.Errorf("Charge: %v", err)
				return
			}
			if d.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	return admitted.Load()
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) engine.Store {
		return srv.open(t, Options{Prefix: fmt.Sprintf("conf%d", n.Add(1))})
	})
}

func TestExactAcrossEngines(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name string
		cfg  engine.Config
		req  func(round, i int) engine.Request
		want int64
	}{
		{name: "window limit", cfg: testConfig(25, 0, 0, 0), want: 25,
			req: func(round, _ int) engine.Request { return engine.Request{Subject: fmt.Sprintf("w%d", round)} }},
		{name: "balance floor(B/c)", cfg: testConfig(1000, 100, 7, 0), want: 100 / 7,
			req: func(round, _ int) engine.Request {
				return engine.Request{Subject: fmt.Sprintf("b%d", round), Action: "translate"}
			}},
		{name: "team balance", cfg: testConfig(1000, 0, 9, 200), want: 200 / 9,
			req: func(_, i int) engine.Request {
				return engine.Request{Subject: []string{"ann", "bob"}[i%2], Action: "translate"}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 10 {
				// The deadline is generous: this test is about exactness
				// under contention, on a loaded machine with -race.
				st := srv.open(t, Options{Prefix: fmt.Sprintf("exact%d", round), Timeout: 5 * time.Second})
				engines := newEngines(t, st, tc.cfg, 2)
				got := hammer(t, engines, func(i int) engine.Request { return tc.req(round, i) })
				if got != tc.want {
					t.Fatalf("round %d: admitted %d of 64, want exactly %d", round, got, tc.want)
				}
			}
		})
	}
}

func TestLocalRefusalSkipsRedis(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	e := newEngines(t, st, testConfig(3, 0, 0, 0), 1)[0]
	ctx := context.Background()
	for i := range 4 {
		d, err := e.Charge(ctx, engine.Request{Subject: "carol"})
		if err != nil {
			t.Fatalf("Charge %d: %v", i, err)
		}
		if d.Allowed != (i < 3) {
			t.Fatalf("Charge %d: allowed = %v, want %v", i, d.Allowed, i < 3)
		}
	}
	calls := st.Stats().Calls
	d, err := e.Charge(ctx, engine.Request{Subject: "carol"})
	if err != nil || d.Allowed || d.Reason != engine.ReasonWindowExceeded {
		t.Fatalf("Charge after the limit = %v, %v; want a window refusal", d.Reason, err)
	}
	if got := st.Stats().Calls; got != calls {
		t.Fatalf("a request known to be over the limit made %d round trips, want 0", got-calls)
	}
	if d.Binding.Name != "hour" || d.Binding.Used != 3 || d.RetryAfter <= 0 {
		t.Fatalf("binding = %+v, retry after %s; want hour used 3 and a retry time", d.Binding, d.RetryAfter)
	}
}

func TestCountersExpire(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{ExpiryMargin: time.Second})
	sliding := engine.WindowSliding
	cfg := testConfig(10, 50, 1, 0)
	cfg.Tiers["free"] = engine.TierConfig{Limits: []engine.LimitConfig{
		{Name: "hour", Period: hour, Max: 10},
		{Name: "10m", Period: engine.Period{Every: 10 * time.Minute}, Max: 10, Mode: &sliding},
	}, Tokens: engine.TokenGrant{Amount: 50, Period: month}}
	engines := newEngines(t, st, cfg, 1)
	if _, err := engines[0].Charge(context.Background(), engine.Request{Subject: "dan", Action: "translate"}); err != nil {
		t.Fatalf("Charge: %v", err)
	}
	now := engines[0].Config().Now()
	c := srv.client(t)
	ctx := context.Background()
	keys, err := c.Keys(ctx, "qg:*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	hourEnd := now.Truncate(time.Hour).Add(time.Hour)
	tenEnd := now.Truncate(10 * time.Minute).Add(10 * time.Minute)
	want := map[string]time.Duration{
		"}:w:dan:hour:": hourEnd.Add(time.Second).Sub(now),
		"}:w:dan:10m:":  tenEnd.Add(10 * time.Minute).Add(time.Second).Sub(now),
		"}:b:dan":       -1, // balances never expire
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %v, want %d", keys, len(want))
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "qg:{dan}:") {
			t.Errorf("key %q does not carry the hash tag {dan}", k)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", k, err)
		}
		for part, w := range want {
			if !strings.Contains(k, part) {
				continue
			}
			// The server's clock runs on from the test's fixed now.
			if (w < 0 && ttl >= 0) || (w >= 0 && (ttl > w || ttl < w-5*time.Second)) {
				t.Errorf("PTTL %s = %s, want %s", k, ttl, w)
			}
		}
	}
}

func TestNoScriptReload(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	e := newEngines(t, st, testConfig(5, 0, 0, 0), 1)[0]
	ctx := context.Background()
	if _, err := e.Charge(ctx, engine.Request{Subject: "erin"}); err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if err := srv.client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	d, err := e.Charge(ctx, engine.Request{Subject: "erin"})
	if err != nil || !d.Allowed || d.Binding.Used != 2 {
		t.Fatalf("Charge after SCRIPT FLUSH = allowed %v used %d, %v; want allowed, used 2", d.Allowed, d.Binding.Used, err)
	}
}

func TestAddCredits(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	e := newEngines(t, st, testConfig(100, 0, 10, 0), 1)[0]
	ctx := context.Background()
	d, err := e.Charge(ctx, engine.Request{Subject: "fay", Action: "translate"})
	if err != nil || d.Allowed || d.Reason != engine.ReasonInsufficientBalance {
		t.Fatalf("Charge with no tokens = %v, %v; want insufficient balance", d.Reason, err)
	}
	b := engine.PlanBalance{Owner: "fay"}
	if r, err := st.AddCredits(ctx, "fay", b, -1); err != nil || r.OK {
		t.Fatalf("AddCredits(-1) = %+v, %v; want refused", r, err)
	}
	if r, err := st.AddCredits(ctx, "fay", b, 25); err != nil || !r.OK || r.Credits != 25 {
		t.Fatalf("AddCredits(25) = %+v, %v; want 25 credits", r, err)
	}
	for i, want := range []bool{true, true, false} {
		d, err = e.Charge(ctx, engine.Request{Subject: "fay", Action: "translate"})
		if err != nil || d.Allowed != want {
			t.Fatalf("Charge %d = allowed %v, %v; want %v", i, d.Allowed, err, want)
		}
	}
	if d.Balance != 5 || d.Reason != engine.ReasonInsufficientBalance {
		t.Fatalf("last Charge = %v with balance %d, want insufficient balance with 5", d.Reason, d.Balance)
	}
}

func TestFailureAndRecovery(t *testing.T) {
	srv := startServer(t)
	const timeout = 50 * time.Millisecond
	st := srv.open(t, Options{Timeout: timeout})
	e := newEngines(t, st, testConfig(100, 0, 0, 0), 1)[0]
	ctx := context.Background()
	if _, err := e.Charge(ctx, engine.Request{Subject: "gus"}); err != nil {
		t.Fatalf("Charge: %v", err)
	}

	// A paused server is a slow one: the call gives up at the deadline.
	if err := srv.client(t).Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	checkFails(t, e, st, timeout)
	if err := srv.client(t).Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}

	srv.stop()
	checkFails(t, e, st, timeout)
	srv.start()
	var d engine.Decision
	var err error
	for range 50 { // the pool may hold a dead connection or two
		if d, err = e.Charge(ctx, engine.Request{Subject: "gus"}); err == nil {
			break
		}
	}
	if err != nil || !d.Allowed || !st.Healthy() {
		t.Fatalf("Charge after restart = %v, %v, healthy %v; want allowed and healthy", d.Allowed, err, st.Healthy())
	}
}

// checkFails asserts that a Charge fails within the deadline (plus
// scheduling slack), carries the tier's failure mode and marks st
// unhealthy.
func checkFails(t *testing.T, e *engine.Engine, st *Store, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	d, err := e.Charge(context.Background(), engine.Request{Subject: "gus"})
	took := time.Since(start)
	if err == nil {
		t.Fatalf("Charge succeeded, want an error")
	}
	if took > timeout+450*time.Millisecond {
		t.Fatalf("Charge failed after %s, want within the %s deadline", took, timeout)
	}
	if d.FailureMode != engine.FailOpen || st.Healthy() {
		t.Fatalf("failure mode %v, healthy %v; want open and unhealthy", d.FailureMode, st.Healthy())
	}
}

func TestStatusChargesNothing(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	e := newEngines(t, st, testConfig(10, 50, 7, 0), 1)[0]
	ctx := context.Background()
	if _, err := e.Charge(ctx, engine.Request{Subject: "hal", Action: "translate"}); err != nil {
		t.Fatalf("Charge: %v", err)
	}
	now := e.Config().Now()
	start := now.Truncate(time.Hour)
	p := &engine.Plan{Tag: "hal", Now: now,
		Counters: []engine.PlanCounter{{Owner: "hal", Limit: "hour", Start: start, End: start.Add(time.Hour),
			ExpireAt: start.Add(time.Hour), Max: 10, Amount: 1}},
		Balance: engine.PlanBalance{Owner: "hal", Cost: 7, Grant: 50,
			PeriodStart: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)}}
	for i := range 2 {
		r, err := st.Status(ctx, p)
		if err != nil {
			t.Fatalf("Status %d: %v", i, err)
		}
		if r.Allowed || r.Current[0] != 1 || r.Allowance != 43 {
			t.Fatalf("Status %d = %+v; want hour 1, allowance 43 and nothing charged", i, r)
		}
	}
}
