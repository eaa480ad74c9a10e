package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeAuthority is a hand-written in-memory Authority: the engine's tests
// must not need a Redis server (store/redis tests the real one). It
// records the plans it is given.
type fakeAuthority struct {
	mu       sync.Mutex
	counters map[string]int64
	credits  map[string]int64
	spent    map[string]int64 // allowance spent, per owner and period
	plans    []Plan
	err      error
}

func newFakeAuthority() *fakeAuthority {
	return &fakeAuthority{counters: map[string]int64{}, credits: map[string]int64{}, spent: map[string]int64{}}
}

func counterID(owner, limit string, start time.Time) string {
	return fmt.Sprintf("%s|%s|%d", owner, limit, start.UnixNano())
}

func (f *fakeAuthority) Charge(_ context.Context, p *Plan) (PlanResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans = append(f.plans, *p)
	if f.err != nil {
		return PlanResult{}, f.err
	}
	r := PlanResult{Refused: -1, Current: make([]int64, len(p.Counters)), Previous: make([]int64, len(p.Counters))}
	for i, pc := range p.Counters {
		r.Current[i] = f.counters[counterID(pc.Owner, pc.Limit, pc.Start)]
		if r.Refused < 0 && r.Current[i]+pc.Amount > pc.Max {
			r.Refused = i
		}
	}
	b := p.Balance
	bk := counterID(b.Owner, "", b.PeriodStart)
	if c, ok := f.credits[b.Owner]; ok {
		r.Credits = c
	} else {
		r.Credits = b.StartingCredits
	}
	r.Allowance = b.Grant - f.spent[bk]
	r.Short = b.Owner != "" && !b.Unlimited && b.Cost > 0 && r.Allowance+r.Credits < b.Cost
	if r.Refused >= 0 || r.Short {
		return r, nil
	}
	r.Allowed = true
	for i, pc := range p.Counters {
		f.counters[counterID(pc.Owner, pc.Limit, pc.Start)] += pc.Amount
		r.Current[i] += pc.Amount
	}
	if b.Owner != "" && !b.Unlimited {
		fa := min(r.Allowance, b.Cost)
		f.spent[bk] += fa
		r.Allowance -= fa
		r.Credits -= b.Cost - fa
		f.credits[b.Owner] = r.Credits
	}
	return r, nil
}

func (f *fakeAuthority) AddCredits(_ context.Context, _ string, b PlanBalance, delta int64) (CreditResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return CreditResult{}, f.err
	}
	c, ok := f.credits[b.Owner]
	if !ok {
		c = b.StartingCredits
	}
	a := b.Grant - f.spent[counterID(b.Owner, "", b.PeriodStart)]
	if c+delta < 0 {
		return CreditResult{Allowance: a, Credits: c}, nil
	}
	f.credits[b.Owner] = c + delta
	return CreditResult{OK: true, Allowance: a, Credits: c + delta}, nil
}

// bump adds n to a counter behind the engine's back, as another replica
// would.
func (f *fakeAuthority) bump(owner, limit string, start time.Time, n int64) {
	f.mu.Lock()
	f.counters[counterID(owner, limit, start)] += n
	f.mu.Unlock()
}

func (f *fakeAuthority) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.plans)
}

func authorityConfig(auth Authority, now *time.Time) testConfig {
	sliding := WindowSliding
	return testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{"free": {
			Limits: []LimitConfig{{Name: "hour", Period: hour, Max: 3},
				{Name: "10m", Period: Period{Every: 10 * time.Minute}, Max: 100, Mode: &sliding}},
			Tokens:      TokenGrant{Amount: 20, Period: month},
			FailureMode: FailOpen,
			MaxDelay:    time.Hour,
		}},
		Actions: map[string]ActionConfig{"translate": {PerCall: 8}},
		Teams:   map[string]TeamConfig{"ops": {Members: []string{"ann"}, Tokens: TokenGrant{Amount: 50, Period: month}}},
	}, Options: Options{
		Authority: auth,
		Now:       func() time.Time { return *now },
	}}
}

func TestAuthorityPlan(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		tag     string
		owner   string
		grant   int64
		balance int64
	}{
		{name: "subject", req: Request{Subject: "zoe", Action: "translate"}, tag: "zoe", owner: "zoe", grant: 20, balance: 12},
		{name: "team member", req: Request{Subject: "ann", Action: "translate"}, tag: "team:ops", owner: "team:ops", grant: 50, balance: 42},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(5 * time.Minute)
			f := newFakeAuthority()
			e := newEngine(t, authorityConfig(f, &now))
			d, err := e.Charge(context.Background(), tc.req)
			if err != nil || !d.Allowed {
				t.Fatalf("Charge = %v, %v; want allowed", d.Reason, err)
			}
			if d.Balance != tc.balance || d.BalanceOwner != tc.owner {
				t.Fatalf("balance %d of %q, want %d of %q", d.Balance, d.BalanceOwner, tc.balance, tc.owner)
			}
			p := f.plans[0]
			if p.Tag != tc.tag || p.Balance.Owner != tc.owner || p.Balance.Grant != tc.grant || p.Balance.Cost != 8 {
				t.Fatalf("plan tag %q balance %+v; want tag %q, owner %q, grant %d, cost 8", p.Tag, p.Balance, tc.tag, tc.owner, tc.grant)
			}
			want := []PlanCounter{
				{Owner: tc.req.Subject, Limit: "hour", Start: t0, End: t0.Add(time.Hour), ExpireAt: t0.Add(time.Hour), Max: 3, Amount: 1},
				{Owner: tc.req.Subject, Limit: "10m", Start: t0, End: t0.Add(10 * time.Minute), PrevStart: t0.Add(-10 * time.Minute),
					ExpireAt: t0.Add(20 * time.Minute), Max: 100, Amount: 1},
			}
			if len(p.Counters) != len(want) {
				t.Fatalf("counters = %+v, want %+v", p.Counters, want)
			}
			for i, w := range want {
				g := p.Counters[i]
				if g.Owner != w.Owner || g.Limit != w.Limit || !g.Start.Equal(w.Start) || !g.End.Equal(w.End) ||
					!g.PrevStart.Equal(w.PrevStart) || !g.ExpireAt.Equal(w.ExpireAt) || g.Max != w.Max || g.Amount != w.Amount {
					t.Errorf("counter %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestAuthorityVerdictCache(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	e := newEngine(t, authorityConfig(f, &now))
	ctx := context.Background()
	// Another replica used two of the three calls.
	f.bump("yan", "hour", t0, 2)
	d, err := e.Charge(ctx, Request{Subject: "yan"})
	if err != nil || !d.Allowed || d.Binding.Name != "hour" || d.Binding.Used != 3 {
		t.Fatalf("Charge = %v used %d, %v; want allowed with hour used 3", d.Allowed, d.Binding.Used, err)
	}
	d, err = e.Charge(ctx, Request{Subject: "yan"})
	if err != nil || d.Allowed || d.Reason != ReasonWindowExceeded {
		t.Fatalf("Charge over the limit = %v, %v; want a window refusal", d.Reason, err)
	}
	if f.calls() != 1 {
		t.Fatalf("made %d round trips, want 1: a full window is refused from the cache", f.calls())
	}
	if d.RetryAfter != time.Hour || d.Delay != 0 {
		t.Fatalf("retry after %s, delay %s; want 1h and no reservation through an authority", d.RetryAfter, d.Delay)
	}
	now = t0.Add(time.Hour)
	if d, err = e.Charge(ctx, Request{Subject: "yan"}); err != nil || !d.Allowed || f.calls() != 2 {
		t.Fatalf("Charge in the next window = %v, %v after %d calls; want allowed through the authority", d.Allowed, err, f.calls())
	}
}

func TestAuthorityRefusals(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	e := newEngine(t, authorityConfig(f, &now))
	ctx := context.Background()
	f.bump("xia", "10m", t0, 100)
	d, err := e.Charge(ctx, Request{Subject: "xia"})
	if err != nil || d.Reason != ReasonWindowExceeded || d.Binding.Name != "10m" || d.Binding.Used != 100 {
		t.Fatalf("Charge = %v binding %+v, %v; want refused by 10m at 100", d.Reason, d.Binding, err)
	}
	for i, want := range []Reason{ReasonOK, ReasonOK, ReasonInsufficientBalance} {
		d, err = e.Charge(ctx, Request{Subject: "wu", Action: "translate"})
		if err != nil || d.Reason != want {
			t.Fatalf("Charge %d = %v, %v; want %v", i, d.Reason, err, want)
		}
	}
	if d.Balance != 4 || d.Charged != 0 {
		t.Fatalf("balance %d charged %d, want 4 and 0", d.Balance, d.Charged)
	}
}

func TestAuthorityError(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	f.err = errors.New("unreachable")
	e := newEngine(t, authorityConfig(f, &now))
	d, err := e.Charge(context.Background(), Request{Subject: "vic"})
	if err == nil || d.FailureMode != FailOpen || d.Tier != "free" {
		t.Fatalf("Charge = %v, tier %q mode %v; want an error with the tier's failure mode", err, d.Tier, d.FailureMode)
	}
	if _, err := e.addCreditsRemote(context.Background(), e.rules.Load(), "vic", 5); err == nil {
		t.Fatalf("addCreditsRemote succeeded with the authority down")
	}
}

func TestAuthorityAddCredits(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	e := newEngine(t, authorityConfig(f, &now))
	ctx := context.Background()
	rs := e.rules.Load()
	tests := []struct {
		name    string
		key     string
		delta   int64
		want    int64
		wantErr error
	}{
		{name: "subject", key: "uma", delta: 30, want: 50},
		{name: "negative", key: "uma", delta: -31, want: 50, wantErr: ErrNegativeBalance},
		{name: "team", key: "team:ops", delta: 5, want: 55},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.addCreditsRemote(ctx, rs, tc.key, tc.delta)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("addCreditsRemote(%q, %d) = %d, %v; want %d, %v", tc.key, tc.delta, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// Status reads without charging.
func (f *fakeAuthority) Status(_ context.Context, p *Plan) (PlanResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return PlanResult{}, f.err
	}
	r := PlanResult{Refused: -1, Current: make([]int64, len(p.Counters)), Previous: make([]int64, len(p.Counters))}
	for i, pc := range p.Counters {
		r.Current[i] = f.counters[counterID(pc.Owner, pc.Limit, pc.Start)]
	}
	b := p.Balance
	r.Credits = b.StartingCredits
	if c, ok := f.credits[b.Owner]; ok {
		r.Credits = c
	}
	r.Allowance = b.Grant - f.spent[counterID(b.Owner, "", b.PeriodStart)]
	return r, nil
}

func TestAuthorityRefreshStatus(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	e := newEngine(t, authorityConfig(f, &now))
	ctx := context.Background()
	if _, err := e.Charge(ctx, Request{Subject: "tom", Action: "translate"}); err != nil {
		t.Fatal(err)
	}
	// Another replica charged tom twice more.
	f.bump("tom", "hour", t0, 2)
	rs := e.rules.Load()
	c := charge{e: e, rs: rs, req: Request{Subject: "tom"}, now: now.UnixNano(), factor: 1, allActions: true,
		lims: new([MaxLimitsPerRequest]applied)}
	c.prepare()
	if err := e.acquire(ctx, rs, &c.req, c.user, true, &c.h); err != nil {
		t.Fatal(err)
	}
	c.h.st = c.h.st.copyLocked()
	e.release(ctx, c.h.si, c.h.ti)
	c.tier = rs.resolveTier(c.static, c.h.st.prof)
	if err := c.collectLocked(); err != nil {
		t.Fatal(err)
	}
	c.checkLocked()
	owner, grant, key := c.balanceOwnerLocked()
	if err := c.refreshRemote(ctx, owner, grant, key); err != nil {
		t.Fatalf("refreshRemote: %v", err)
	}
	got := c.limitStatuses()
	if got[0].Name != "hour" || got[0].Used != 3 || balanceLocked(owner) != 12 {
		t.Fatalf("status = %+v, balance %d; want hour used 3 and balance 12", got, balanceLocked(owner))
	}
	f.err = errors.New("down")
	if err := c.refreshRemote(ctx, owner, grant, key); err == nil {
		t.Fatalf("refreshRemote succeeded with the authority down")
	}
}

func TestAuthorityFailOpenCountedLocally(t *testing.T) {
	now := t0
	f := newFakeAuthority()
	f.err = errors.New("unreachable")
	e := newEngine(t, authorityConfig(f, &now))
	ctx := context.Background()
	steps := []struct {
		name    string
		at      time.Time
		down    bool
		wantErr bool
		reason  Reason
		calls   int // round trips so far
	}{
		{name: "outage: fails open", at: t0, down: true, wantErr: true, calls: 1},
		{name: "outage: fails open again", at: t0.Add(time.Minute), down: true, wantErr: true, calls: 2},
		{name: "outage: the hour's third call", at: t0.Add(2 * time.Minute), down: true, wantErr: true, calls: 3},
		{name: "outage: full through fail-open counting, so it asks; the ask fails and the cache refuses", at: t0.Add(3 * time.Minute), down: true, reason: ReasonWindowExceeded, calls: 4},
		{name: "outage: refused from the cache, the next ask not due", at: t0.Add(3*time.Minute + openProbeEvery/2), down: true, reason: ReasonWindowExceeded, calls: 4},
		{name: "outage: the ask is due again, fails again", at: t0.Add(3*time.Minute + openProbeEvery), down: true, reason: ReasonWindowExceeded, calls: 5},
		{name: "back: the ask is answered by the authority's count, which admits", at: t0.Add(4 * time.Minute), reason: ReasonOK, calls: 6},
		{name: "back: decided by the authority", at: t0.Add(5 * time.Minute), reason: ReasonOK, calls: 7},
		{name: "back: the authority's third of the hour", at: t0.Add(6 * time.Minute), reason: ReasonOK, calls: 8},
		{name: "back: full in the cache, which holds the authority's count: refused with no ask", at: t0.Add(7 * time.Minute), reason: ReasonWindowExceeded, calls: 8},
		{name: "back, next window: the authority's count again", at: t0.Add(time.Hour), reason: ReasonOK, calls: 9},
	}
	for _, s := range steps {
		now = s.at
		f.mu.Lock()
		f.err = nil
		if s.down {
			f.err = errors.New("unreachable")
		}
		f.mu.Unlock()
		d, err := e.Charge(ctx, Request{Subject: "una"})
		if (err != nil) != s.wantErr || (!s.wantErr && d.Reason != s.reason) || f.calls() != s.calls {
			t.Fatalf("%s: Charge = %v, %v after %d round trips; want error %v, reason %v after %d",
				s.name, d.Reason, err, f.calls(), s.wantErr, s.reason, s.calls)
		}
	}
}
