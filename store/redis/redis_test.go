package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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

// engineConfig is what a test builds an engine from: its Rules and its
// Options, kept together so that a test can set either by field name.
type engineConfig struct {
	engine.Rules
	engine.Options
}

// testConfig is one tier "free" with an hourly limit of max calls, a grant
// of tokens per month (0: none), the action "translate" costing cost, and
// team "ops" (members ann and bob) sharing teamTokens (0: no team).
func testConfig(max, tokens, cost, teamTokens int64) engineConfig {
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{"free": {
			Limits:      []engine.LimitConfig{{Name: "hour", Period: hour, Max: max}},
			Tokens:      engine.TokenGrant{Amount: tokens, Period: month},
			FailureMode: engine.FailOpen,
		}},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: cost}},
	}}
	if teamTokens > 0 {
		cfg.Teams = map[string]engine.TeamConfig{"ops": {Members: []string{"ann", "bob"},
			Tokens: engine.TokenGrant{Amount: teamTokens, Period: month}}}
	}
	return cfg
}

// newEngines returns n engines sharing st as their authority and store,
// as quotagate runs them, all at one fixed time unless cfg has a clock.
func newEngines(t *testing.T, st *Store, cfg engineConfig, n int) []*engine.Engine {
	t.Helper()
	cfg.Authority, cfg.Store = st, st
	if cfg.Now == nil {
		cfg.Now = fixedNow()
	}
	out := make([]*engine.Engine, n)
	for i := range out {
		e, err := engine.New(cfg.Rules, cfg.Options)
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
		// The suite checks what is stored, not deadlines: a loaded CI machine
		// under -race must not fail it on the 50ms default.
		return srv.open(t, Options{Prefix: fmt.Sprintf("conf%d", n.Add(1)), Timeout: 5 * time.Second})
	})
}

// exactCase is one exactness check: however many engines race, exactly
// want of the requests req makes in a round are admitted.
type exactCase struct {
	name string
	cfg  engineConfig
	req  func(round, i int) engine.Request
	want int64
}

// exactCases are the exactness checks run against one Redis server and
// against a cluster: a window limit, a balance and a team's shared balance.
var exactCases = []exactCase{
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

func TestExactAcrossEngines(t *testing.T) {
	srv := startServer(t)
	tests := exactCases
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

// TestStateHashes checks the layout of a subject's state hash: one key per
// owner under its hash tag, a counter's fields reused when its window
// rolls (so they never pile up), an expiry at the last window's end for a
// hash of counters only, and none for a hash that holds a balance.
func TestStateHashes(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{ExpiryMargin: time.Second})
	sliding := engine.WindowSliding
	cfg := testConfig(10, 0, 2, 0)
	cfg.Tiers["free"] = engine.TierConfig{Limits: []engine.LimitConfig{
		{Name: "hour", Period: hour, Max: 10},
		{Name: "10m", Period: engine.Period{Every: 10 * time.Minute}, Max: 10, Mode: &sliding},
	}}
	cfg.Tiers["paid"] = engine.TierConfig{Limits: cfg.Tiers["free"].Limits,
		Tokens: engine.TokenGrant{Amount: 50, Period: month}}
	cfg.DefaultTier = "free"
	cfg.Users = map[string]engine.UserConfig{"pam": {Tier: "paid"}}
	start := time.Now().Truncate(time.Second)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	cfg.Authority, cfg.Now = st, func() time.Time { return time.Unix(0, clock.Load()) }
	e, err := engine.New(cfg.Rules, cfg.Options)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	ctx := context.Background()
	c := srv.client(t)
	// dan's tier has no tokens, so his calls are free; pam pays 2 tokens.
	charge := func(subject string) {
		t.Helper()
		req := engine.Request{Subject: subject}
		if subject == "pam" {
			req.Action = "translate"
		}
		if d, err := e.Charge(ctx, req); err != nil || !d.Allowed {
			t.Fatalf("Charge %s = %v, %v; want allowed", subject, d.Reason, err)
		}
	}
	hash := func(key string) (map[string]string, time.Duration) {
		t.Helper()
		h, err := c.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatalf("HGETALL %s: %v", key, err)
		}
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		return h, ttl
	}

	charge("dan")
	charge("pam")
	keys, err := c.Keys(ctx, "qg:*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	slices.Sort(keys)
	// pam's priced decision is held for settlement: one record, which
	// expires after PendingMaxAge (see settle.go).
	var records []string
	keys = slices.DeleteFunc(keys, func(k string) bool {
		if strings.Contains(k, ":d:") {
			records = append(records, k)
			return true
		}
		return false
	})
	if want := []string{"qg:{dan}:o:dan", "qg:{pam}:o:pam"}; !slices.Equal(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	if len(records) != 1 {
		t.Fatalf("pending records = %v, want pam's one", records)
	}
	if ttl, err := c.PTTL(ctx, records[0]).Result(); err != nil || ttl <= 0 || ttl > 15*time.Minute {
		t.Fatalf("PTTL of the pending record = %v, %v; want within 15m", ttl, err)
	}

	// Counters only: the hash expires with its last window, the sliding
	// one, which weighs in for a window after its end.
	tenEnd := start.Truncate(10 * time.Minute).Add(10 * time.Minute)
	wantTTL := tenEnd.Add(10 * time.Minute).Add(time.Second).Sub(start)
	if hourEnd := start.Truncate(time.Hour).Add(time.Hour).Add(time.Second); hourEnd.Sub(start) > wantTTL {
		wantTTL = hourEnd.Sub(start)
	}
	h, ttl := hash("qg:{dan}:o:dan")
	if ttl > wantTTL || ttl < wantTTL-5*time.Second { // the server's clock runs on
		t.Errorf("PTTL of a hash of counters = %s, want %s", ttl, wantTTL)
	}
	if h["n:hour"] != "1" || h["n:10m"] != "1" || h["p:10m"] != "0" || h["x"] == "" || h["c"] != "" {
		t.Errorf("hash of counters = %v, want n:hour 1, n:10m 1, p:10m 0, an expiry x and no balance", h)
	}
	fields := len(h)

	// A balance never expires.
	h, ttl = hash("qg:{pam}:o:pam")
	if ttl != -1 || h["x"] != "" || h["a"] != "48" || h["c"] != "0" {
		t.Errorf("hash with a balance = %v, PTTL %s; want allowance 48, credits 0, no expiry", h, ttl)
	}

	// Windows roll in place: the sliding window's count moves to p:.
	clock.Add(int64(10 * time.Minute))
	charge("dan")
	h, _ = hash("qg:{dan}:o:dan")
	if len(h) != fields || h["n:10m"] != "1" || h["p:10m"] != "1" {
		t.Errorf("after 10 minutes: %v, want %d fields, n:10m 1 and p:10m 1", h, fields)
	}
	clock.Add(int64(2 * time.Hour))
	charge("dan")
	h, _ = hash("qg:{dan}:o:dan")
	if len(h) != fields || h["n:hour"] != "1" || h["n:10m"] != "1" || h["p:10m"] != "0" {
		t.Errorf("after 2 hours: %v, want %d fields, n:hour 1, n:10m 1, p:10m 0", h, fields)
	}

	// Credits given to a hash of counters make it a hash with a balance,
	// which must not expire.
	if _, err := e.AddCredits(ctx, "dan", 5); err != nil {
		t.Fatalf("AddCredits: %v", err)
	}
	h, ttl = hash("qg:{dan}:o:dan")
	if ttl != -1 || h["x"] != "" || h["c"] != "5" {
		t.Errorf("after AddCredits: %v, PTTL %s; want credits 5 and no expiry", h, ttl)
	}
	charge("dan")
	if h, ttl = hash("qg:{dan}:o:dan"); ttl != -1 || h["x"] != "" {
		t.Errorf("a Charge after AddCredits: %v, PTTL %s; want no expiry", h, ttl)
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
	cfg := testConfig(10, 50, 7, 0)
	cfg.Now = fixedNow()
	e := newEngines(t, st, cfg, 1)[0]
	ctx := context.Background()
	if _, err := e.Charge(ctx, engine.Request{Subject: "hal", Action: "translate"}); err != nil {
		t.Fatalf("Charge: %v", err)
	}
	now := cfg.Now()
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

// TestMatchesInMemoryEngine is a differential test of the charge script:
// one engine decides through Redis and one in memory, on the same
// configuration (fixed and sliding windows, a member of a team with a
// limit and a shared balance, priced actions, grants), and they are given
// the same random requests at the same times, over three hours of a fake
// clock, so windows roll, slide and refill. Every decision must agree.
func TestMatchesInMemoryEngine(t *testing.T) {
	srv := startServer(t)
	sliding := engine.WindowSliding
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{"free": {
			Limits: []engine.LimitConfig{
				{Name: "minute", Period: engine.Period{Calendar: "minute", Every: time.Minute}, Max: 4},
				{Name: "10m", Period: engine.Period{Every: 10 * time.Minute}, Max: 12, Mode: &sliding},
				{Name: "words", Period: hour, Max: 9000, Unit: engine.UnitUnits},
			},
			Tokens: engine.TokenGrant{Amount: 60, Period: hour},
		}},
		Actions: map[string]engine.ActionConfig{
			"translate": {PerThousand: 5, Unit: "words"},
			"ping":      {},
		},
		Teams: map[string]engine.TeamConfig{"ops": {Members: []string{"ann", "bob"},
			Limits: []engine.LimitConfig{{Name: "team-minute", Period: engine.Period{Calendar: "minute", Every: time.Minute}, Max: 6}},
			Tokens: engine.TokenGrant{Amount: 80, Period: hour}}},
	}}
	start := time.Now().Truncate(time.Minute)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	mem, err := engine.New(cfg.Rules, cfg.Options)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	red := newEngines(t, srv.open(t, Options{Prefix: "diff", Timeout: 5 * time.Second}), cfg, 1)[0]

	rng := rand.New(rand.NewPCG(7, 11))
	subjects := []string{"ann", "bob", "cy", "dee"}
	ctx := context.Background()
	admitted := 0
	refusedBy := map[string]int{}
	for i := range 2000 {
		clock.Add(int64(time.Duration(rng.IntN(12000)) * time.Millisecond))
		req := engine.Request{Subject: subjects[rng.IntN(len(subjects))], Action: "ping"}
		if rng.IntN(2) == 0 {
			req.Action, req.Units = "translate", int64(rng.IntN(3000))
		}
		dm, errm := mem.Charge(ctx, req)
		dr, errr := red.Charge(ctx, req)
		if errm != nil || errr != nil {
			t.Fatalf("request %d %+v: errors %v, %v", i, req, errm, errr)
		}
		if dm.Allowed != dr.Allowed || dm.Reason != dr.Reason || dm.Binding.Name != dr.Binding.Name ||
			dm.Binding.Used != dr.Binding.Used || dm.Balance != dr.Balance {
			t.Fatalf("request %d %+v at +%s: in memory %v %v binding %+v balance %+v; through Redis %v %v binding %+v balance %+v",
				i, req, time.Duration(clock.Load()-start.UnixNano()), dm.Allowed, dm.Reason, dm.Binding, dm.Balance,
				dr.Allowed, dr.Reason, dr.Binding, dr.Balance)
		}
		if dm.Allowed {
			admitted++
		} else {
			refusedBy[dm.Binding.Name]++
		}
	}
	t.Logf("refused by: %v", refusedBy)
	// Both outcomes must be common, or the comparison proves little.
	if admitted < 400 || admitted > 1600 {
		t.Fatalf("admitted %d of 2000, want a mix of admissions and refusals", admitted)
	}
}

// TestQuantitiesStayCountable checks the 2^53-1 bound through Redis: a
// request whose cost cannot be counted, or that counts more than a
// limit's maximum, is refused as request_too_large without a round trip;
// and credits that would pass the bound are refused by the script, even
// when this replica's cached credits are stale, leaving Redis as it was.
func TestQuantitiesStayCountable(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	cfg := testConfig(100, 0, 10, 0)
	cfg.Actions["huge"] = engine.ActionConfig{PerCall: engine.MaxQuantity, PerThousand: engine.MaxQuantity}
	cfg.Tiers["free"] = engine.TierConfig{
		Limits:      append(cfg.Tiers["free"].Limits, engine.LimitConfig{Name: "words", Period: hour, Max: 20000, Unit: engine.UnitUnits}),
		FailureMode: engine.FailOpen,
	}
	engines := newEngines(t, st, cfg, 2)
	e, other := engines[0], engines[1]
	ctx := context.Background()
	if d, err := e.Charge(ctx, engine.Request{Subject: "fay"}); err != nil || !d.Allowed {
		t.Fatalf("a plain call = %v, %v", d.Reason, err) // loads fay's state and profile
	}
	calls := st.Stats().Calls
	for _, req := range []engine.Request{
		{Subject: "fay", Action: "huge", Units: 1000},
		{Subject: "fay", Action: "translate", Units: 700000},
		{Subject: "fay", Action: "translate", Units: 1 << 62},
	} {
		d, err := e.Charge(ctx, req)
		if err != nil || d.Reason != engine.ReasonRequestTooLarge || d.RetryAfter != 0 || d.Cost < 0 {
			t.Fatalf("Charge(%+v) = %v cost %d retry %s, %v; want request_too_large", req, d.Reason, d.Cost, d.RetryAfter, err)
		}
	}
	if got := st.Stats().Calls; got != calls {
		t.Errorf("requests too large made %d round trips, want 0", got-calls)
	}
	if _, err := e.AddCredits(ctx, "fay", engine.MaxQuantity-5); err != nil {
		t.Fatal(err)
	}
	// other has not seen fay's credits: only the script can refuse.
	if _, err := other.AddCredits(ctx, "fay", 6); !errors.Is(err, engine.ErrQuantityTooLarge) {
		t.Fatalf("AddCredits past 2^53-1 through a stale replica: %v, want ErrQuantityTooLarge", err)
	}
	if r, err := st.AddCredits(ctx, "fay", engine.PlanBalance{Owner: "fay"}, 6); err != nil || r.OK || r.Credits != engine.MaxQuantity-5 {
		t.Fatalf("script AddCredits(6) = %+v, %v; want refused with the credits unchanged", r, err)
	}
	if bal, err := e.AddCredits(ctx, "fay", 5); err != nil || bal != engine.MaxQuantity {
		t.Fatalf("AddCredits up to 2^53-1 = %d, %v", bal, err)
	}
}

// TestTierChangeGrantThroughRedis: through the Redis authority, a tier
// change mid-period applies the new grant minus what was spent this
// period at once (upgrade), clamps at zero (downgrade), leaves credits
// alone, and every replica sees the same allowance.
func TestTierChangeGrantThroughRedis(t *testing.T) {
	srv := startServer(t)
	st := srv.open(t, Options{})
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"freemium": {Priority: engine.PriorityLow, Tokens: engine.TokenGrant{Amount: 100, Period: month}},
			"standard": {Priority: engine.PriorityMedium, Tokens: engine.TokenGrant{Amount: 1000, Period: month}},
		},
		Actions: map[string]engine.ActionConfig{"translate": {PerCall: 1, PerThousand: 1000}},
	}}
	engines := newEngines(t, st, cfg, 2)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	translate := func(e *engine.Engine, words int64) engine.Decision {
		t.Helper()
		d, err := e.Charge(ctx, engine.Request{Subject: "uma", Action: "translate", Units: words})
		if err != nil {
			t.Fatalf("Charge: %v", err)
		}
		return d
	}
	if d := translate(a, 80); !d.Allowed || d.Balance != 19 {
		t.Fatalf("81-token translate on freemium: allowed %v balance %d; want 19 left", d.Allowed, d.Balance)
	}
	if _, err := a.AddCredits(ctx, "uma", 7); err != nil {
		t.Fatal(err)
	}
	if err := a.SetProfile(ctx, "uma", engine.Profile{Tier: "standard"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetProfile(ctx, "uma", engine.Profile{Tier: "standard"}); err != nil {
		t.Fatal(err)
	}
	// A user upgraded mid-month spends 25 tokens right after the upgrade,
	// on either replica.
	if d := translate(b, 24); !d.Allowed || d.Balance != 1000-81-25+7 {
		t.Fatalf("25-token translate after the upgrade: allowed %v balance %d; want %d", d.Allowed, d.Balance, 1000-81-25+7)
	}
	s, err := a.Status(ctx, "uma")
	if err != nil {
		t.Fatal(err)
	}
	if s.Allowance != 1000-106 || s.Credits != 7 {
		t.Fatalf("status after the upgrade: allowance %d credits %d; want %d and 7", s.Allowance, s.Credits, 1000-106)
	}
	// Downgrade: 106 spent, more than freemium's 100: the allowance is
	// 0, the credits stay and pay.
	for _, e := range engines {
		if err := e.SetProfile(ctx, "uma", engine.Profile{Tier: "freemium"}); err != nil {
			t.Fatal(err)
		}
	}
	if d := translate(a, 0); !d.Allowed || d.Balance != 6 {
		t.Fatalf("1-token translate after the downgrade: allowed %v balance %d; want paid from credits, 6 left", d.Allowed, d.Balance)
	}
	if d := translate(b, 9); d.Allowed {
		t.Fatalf("10-token translate with 6 credits and no allowance was allowed (balance %d)", d.Balance)
	}
	// Credits through the script apply the grant change too.
	if _, err := a.AddCredits(ctx, "uma", engine.MaxCredits); err == nil {
		t.Fatal("credits past MaxCredits were accepted")
	}
}
