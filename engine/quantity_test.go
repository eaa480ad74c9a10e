package engine

import (
	"context"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// bigPrice is priceOf in arbitrary precision: perCall + ceil(max(units,
// 0) × perThousand / 1000).
func bigPrice(perCall, perThousand, units int64) *big.Int {
	u := big.NewInt(max(units, 0))
	p := new(big.Int).Mul(u, big.NewInt(perThousand))
	p.Add(p, big.NewInt(999))
	p.Quo(p, big.NewInt(1000))
	return p.Add(p, big.NewInt(perCall))
}

// extremes are the values the property tests draw from, besides random
// ones: the edges of int64 and of MaxQuantity.
var extremes = []int64{0, 1, 2, 999, 1000, 1001, MaxQuantity - 1, MaxQuantity, MaxQuantity + 1,
	math.MaxInt64 / 1000, math.MaxInt64/1000 + 1, math.MaxInt64 - 1, math.MaxInt64}

func pick(r *rand.Rand, lo int64) int64 {
	if r.IntN(3) == 0 {
		return lo + r.Int64N(math.MaxInt64-lo)
	}
	return max(extremes[r.IntN(len(extremes))], lo)
}

func TestPriceOfMatchesBigArithmetic(t *testing.T) {
	tests := []struct {
		name                        string
		perCall, perThousand, units int64
	}{
		{name: "zero", perCall: 0, perThousand: 0, units: 0},
		{name: "example translate", perCall: 0, perThousand: 5, units: 3000},
		{name: "rounds up", perCall: 1, perThousand: 5, units: 1},
		{name: "negative units are zero", perCall: 3, perThousand: 5, units: -700},
		{name: "MaxInt64 units wraps int64 arithmetic", perCall: 0, perThousand: 2, units: math.MaxInt64},
		{name: "the issue's partial body", perCall: 0, perThousand: 5, units: 4611686018427387904},
		{name: "largest exact", perCall: MaxQuantity, perThousand: 0, units: math.MaxInt64},
		{name: "one above", perCall: MaxQuantity, perThousand: 1, units: 1},
		{name: "both maximal", perCall: math.MaxInt64, perThousand: math.MaxInt64, units: math.MaxInt64},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		tests = append(tests, struct {
			name                        string
			perCall, perThousand, units int64
		}{name: "random" + string(rune('a'+i%26)), perCall: pick(r, 0), perThousand: pick(r, 0), units: pick(r, 0) - r.Int64N(3)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := bigPrice(tt.perCall, tt.perThousand, tt.units)
			got, ok := priceOf(tt.perCall, tt.perThousand, tt.units)
			fitsQ := want.Cmp(big.NewInt(MaxQuantity)) <= 0
			if ok != fitsQ || (ok && got != want.Int64()) {
				t.Fatalf("priceOf(%d, %d, %d) = %d, %v; want %s (fits %v)", tt.perCall, tt.perThousand, tt.units, got, ok, want, fitsQ)
			}
		})
	}
}

func TestCheckedHelpers(t *testing.T) {
	tests := []struct {
		name             string
		used, amount, mx int64
		want             bool
	}{
		{name: "fits exactly", used: 5, amount: 5, mx: 10, want: true},
		{name: "one over", used: 6, amount: 5, mx: 10},
		{name: "sum would wrap", used: math.MaxInt64, amount: math.MaxInt64, mx: math.MaxInt64},
		{name: "amount above max", used: 0, amount: 11, mx: 10},
		{name: "negative used counts as zero", used: math.MinInt64, amount: 10, mx: 10, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fits(tt.used, tt.amount, tt.mx); got != tt.want {
				t.Errorf("fits(%d, %d, %d) = %v, want %v", tt.used, tt.amount, tt.mx, got, tt.want)
			}
		})
	}
	if got := addSat(math.MaxInt64, 1); got != math.MaxInt64 {
		t.Errorf("addSat(MaxInt64, 1) = %d", got)
	}
	if got := addSat(math.MinInt64, -1); got != math.MinInt64 {
		t.Errorf("addSat(MinInt64, -1) = %d", got)
	}
	if !atLeastPercent(MaxQuantity, MaxQuantity, 90) || atLeastPercent(MaxQuantity/2, MaxQuantity, 90) {
		t.Error("atLeastPercent wrong near MaxQuantity")
	}
	if got := scaledMax(MaxQuantity, 1e300); got != MaxQuantity {
		t.Errorf("scaledMax(MaxQuantity, 1e300) = %d, want MaxQuantity", got)
	}
	if got := scaledMax(math.MaxInt64, 1); got != MaxQuantity {
		t.Errorf("scaledMax(MaxInt64, 1) = %d, want MaxQuantity", got)
	}
}

func TestValidateRefusesQuantitiesAboveMax(t *testing.T) {
	over := MaxQuantity + 1
	cfg := testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{"t": {
			Limits: []LimitConfig{{Period: hour, Max: over}},
			Tokens: TokenGrant{Amount: over, Period: month},
		}},
		Actions: map[string]ActionConfig{"a": {PerCall: over, PerThousand: over}},
		Users:   map[string]UserConfig{"u": {Credits: over}},
		Teams:   map[string]TeamConfig{"x": {Credits: over}},
	}}
	err := cfg.Validate()
	for _, path := range []string{"tiers.t.limits[0].max", "tiers.t.tokens.amount", "actions.a.per_call", "actions.a.per_thousand", "users.u.credits", "teams.x.credits"} {
		if err == nil || !contains(err.Error(), path+": must be at most 9007199254740991") {
			t.Errorf("Validate() = %v; want a problem at %s", err, path)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// extremeConfig builds a config whose limits, prices, grants and credits
// are drawn from extremes. u1 and u2 share team x's balance; u3 pays its
// own.
func extremeConfig(r *rand.Rand) testConfig {
	q := func() int64 { return min(pick(r, 1), MaxQuantity) }
	limits := []LimitConfig{
		{Name: "calls", Period: hour, Max: q(), Unit: UnitCalls},
		{Name: "words", Period: day, Max: q(), Unit: UnitUnits, Actions: []string{"a"}},
		{Name: "tokens", Period: minute, Max: q(), Unit: UnitTokens, Mode: sliding()},
	}
	factors := []float64{1, 1, 0.5, 3, 1e300}
	return testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{"t": {Limits: limits, Tokens: TokenGrant{Amount: q(), Period: month}}},
		Actions: map[string]ActionConfig{
			"a": {PerCall: min(pick(r, 0), MaxQuantity), PerThousand: min(pick(r, 0), MaxQuantity)},
			"b": {PerCall: 1, PerThousand: 5},
		},
		Users: map[string]UserConfig{"u3": {Credits: min(pick(r, 0), MaxQuantity)}},
		Teams: map[string]TeamConfig{"x": {Members: []string{"u1", "u2"}, Tokens: TokenGrant{Amount: q(), Period: day},
			Credits: min(pick(r, 0), MaxQuantity), Limits: []LimitConfig{{Name: "team-tokens", Period: hour, Max: q(), Unit: UnitTokens}}}},
		Capacity: CapacityConfig{Factor: factors[r.IntN(len(factors))]},
	}}
}

// usedByName maps each limit of s to its Used.
func usedByName(s SubjectStatus) map[string]LimitStatus {
	m := make(map[string]LimitStatus, len(s.Limits))
	for _, l := range s.Limits {
		m[l.Name] = l
	}
	return m
}

// TestArithmeticProperties drives engines with extreme configurations
// through random charges and credit changes and checks, after every step,
// that costs are exact or refused, that an admission moves every window
// and the balance by exactly what it counts, that a refusal moves nothing,
// and that no count or balance is ever negative or above its bound.
func TestArithmeticProperties(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 14))
	ctx := context.Background()
	for cfgN := range 40 {
		cfg := extremeConfig(r)
		now := t0
		cfg.Now = func() time.Time { return now }
		e := newEngine(t, cfg)
		for step := range 150 {
			now = now.Add(time.Duration(r.Int64N(int64(2 * time.Hour))))
			subject := []string{"u1", "u2", "u3"}[r.IntN(3)]
			owner := subject
			if subject != "u3" {
				owner = "team:x"
			}
			if r.IntN(5) == 0 {
				checkCreditsProperty(t, e, r, owner)
				continue
			}
			action := []string{"a", "b", ""}[r.IntN(3)]
			units := pick(r, 0) - r.Int64N(2)
			before := status(t, e, now, subject)
			d := chargeAt(t, e, now, Request{Subject: subject, Action: action, Units: units})
			after := status(t, e, now, subject)
			where := func() string {
				return "config " + itoa(int64(cfgN)) + " step " + itoa(int64(step)) + " " + subject + " " + action + " units " + itoa(units)
			}
			a := cfg.Actions[action]
			want := bigPrice(a.PerCall, a.PerThousand, units)
			countable := units <= MaxQuantity && want.Cmp(big.NewInt(MaxQuantity)) <= 0
			switch {
			case !countable && d.Reason != ReasonRequestTooLarge:
				t.Fatalf("%s: cost %s is not countable, decision %v", where(), want, d.Reason)
			case countable && d.Cost != want.Int64():
				t.Fatalf("%s: cost %d, want %s", where(), d.Cost, want)
			case d.Cost < 0 || d.Charged < 0 || d.Balance < 0:
				t.Fatalf("%s: negative figure in %+v", where(), d)
			case !d.Allowed && (d.Reason == ReasonRequestTooLarge) && d.RetryAfter != 0:
				t.Fatalf("%s: a request too large has RetryAfter %s", where(), d.RetryAfter)
			case d.Reason == ReasonRequestTooLarge && d.HasBinding && d.Amount <= d.Binding.Limit:
				t.Fatalf("%s: too large for %q with %d of %d", where(), d.Binding.Name, d.Amount, d.Binding.Limit)
			}
			bl, al := usedByName(before), usedByName(after)
			for name, l := range al {
				if l.Used < 0 || l.Used > l.Limit || l.Limit > MaxQuantity {
					t.Fatalf("%s: limit %q used %d of %d", where(), name, l.Used, l.Limit)
				}
				delta := l.Used - bl[name].Used
				if !d.Allowed && delta != 0 {
					t.Fatalf("%s: refused (%v) but %q moved by %d", where(), d.Reason, name, delta)
				}
			}
			if d.Allowed {
				for _, l := range d.Limits() {
					var amount int64
					switch l.Name {
					case "calls":
						amount = 1
					case "words":
						amount = max(units, 0)
					case "tokens", "team:team-tokens":
						amount = d.Cost
					}
					if got := al[l.Name].Used - bl[l.Name].Used; got != amount {
						t.Fatalf("%s: admitted; %q moved by %d, want %d", where(), l.Name, got, amount)
					}
				}
				if got := before.Balance - after.Balance; got != d.Cost {
					t.Fatalf("%s: admitted at cost %d; balance moved by %d", where(), d.Cost, got)
				}
			} else if after.Balance != before.Balance || after.Credits != before.Credits {
				t.Fatalf("%s: refused (%v) but the balance moved from %d to %d", where(), d.Reason, before.Balance, after.Balance)
			}
			if after.Balance < 0 || after.Credits < 0 || after.Allowance < 0 || after.Credits > MaxQuantity {
				t.Fatalf("%s: balance %d (allowance %d, credits %d)", where(), after.Balance, after.Allowance, after.Credits)
			}
		}
		_ = ctx
	}
}

// checkCredits adds a random extreme delta to owner's credits and checks
// that the result is exact and within [0, MaxQuantity], or refused with
// nothing changed.
func checkCreditsProperty(t *testing.T, e *Engine, r *rand.Rand, owner string) {
	t.Helper()
	ctx := context.Background()
	delta := pick(r, 0)
	if r.IntN(2) == 0 {
		delta = -delta
	}
	before, err := e.Status(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.AddCredits(ctx, owner, delta)
	after, serr := e.Status(ctx, owner)
	if serr != nil {
		t.Fatal(serr)
	}
	sum := new(big.Int).Add(big.NewInt(before.Credits), big.NewInt(delta))
	inRange := sum.Sign() >= 0 && sum.Cmp(big.NewInt(MaxQuantity)) <= 0
	switch {
	case inRange && err != nil:
		t.Fatalf("AddCredits(%q, %d) with %d credits: %v", owner, delta, before.Credits, err)
	case inRange && after.Credits != sum.Int64():
		t.Fatalf("AddCredits(%q, %d): credits %d -> %d", owner, delta, before.Credits, after.Credits)
	case !inRange && (err == nil || after.Credits != before.Credits):
		t.Fatalf("AddCredits(%q, %d) with %d credits = %v, credits now %d; want a refusal", owner, delta, before.Credits, err, after.Credits)
	case !inRange && sum.Sign() > 0 && !errors.Is(err, ErrQuantityTooLarge):
		t.Fatalf("AddCredits(%q, %d): %v, want ErrQuantityTooLarge", owner, delta, err)
	}
}

func itoa(n int64) string { return big.NewInt(n).String() }

func TestRequestTooLarge(t *testing.T) {
	cfg := testConfig{Rules: Rules{
		Tiers: map[Tier]TierConfig{"freemium": {
			Limits: []LimitConfig{
				{Period: hour, Max: 10},
				{Name: "translate-words", Period: day, Max: 20000, Unit: UnitUnits, Actions: []string{"translate"}},
			},
			Tokens: TokenGrant{Amount: 1000, Period: month},
		}},
		Actions: map[string]ActionConfig{"translate": {PerThousand: 5}, "huge": {PerCall: MaxQuantity, PerThousand: 1}},
	}}
	tests := []struct {
		name      string
		req       Request
		want      Reason
		wantLimit string
	}{
		{name: "fits", req: Request{Subject: "u", Action: "translate", Units: 3000}, want: ReasonOK},
		{name: "700 000 words against 20 000", req: Request{Subject: "u", Action: "translate", Units: 700000}, want: ReasonRequestTooLarge, wantLimit: "translate-words"},
		{name: "MaxInt64 units", req: Request{Subject: "u", Action: "translate", Units: math.MaxInt64}, want: ReasonRequestTooLarge},
		{name: "cost overflows", req: Request{Subject: "u", Action: "huge", Units: 1000}, want: ReasonRequestTooLarge},
		{name: "just under the words limit", req: Request{Subject: "u", Action: "translate", Units: 19999}, want: ReasonOK},
		{name: "no identity names no tier", req: Request{Action: "translate", Units: 1}, want: ReasonNoIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, cfg)
			d := chargeAt(t, e, t0, tt.req)
			if d.Reason != tt.want {
				t.Fatalf("reason %v (%s), want %v", d.Reason, d.Message, tt.want)
			}
			if d.Cost < 0 {
				t.Errorf("cost %d", d.Cost)
			}
			if tt.want == ReasonRequestTooLarge {
				if d.RetryAfter != 0 || d.Message == "" {
					t.Errorf("RetryAfter %s, message %q; want none and a message", d.RetryAfter, d.Message)
				}
				if d.HasBinding != (tt.wantLimit != "") || d.Binding.Name != tt.wantLimit {
					t.Errorf("binding %v %q, want %q", d.HasBinding, d.Binding.Name, tt.wantLimit)
				}
				if s := status(t, e, t0, "u"); limitUsed(t, s, "hour") != 0 || s.Balance != 1000 {
					t.Errorf("a refusal charged: %+v", s)
				}
			}
			if tt.want == ReasonNoIdentity && d.Tier != "" {
				t.Errorf("a decision without identity names tier %q", d.Tier)
			}
		})
	}
}

func TestBalanceRefusalNeverRefilled(t *testing.T) {
	cfg := testConfig{Rules: Rules{
		Tiers:   map[Tier]TierConfig{"t": {Tokens: TokenGrant{Amount: 100, Period: month}}},
		Actions: map[string]ActionConfig{"a": {PerCall: 60}, "big": {PerCall: 150}},
	}}
	e := newEngine(t, cfg)
	admitN(t, e, t0, Request{Subject: "u", Action: "a"}, 1)
	d := chargeAt(t, e, t0, Request{Subject: "u", Action: "a"})
	refill := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	if d.Reason != ReasonInsufficientBalance || d.RetryAfter != refill.Sub(t0) || !d.Refill.Equal(refill) || d.Grant != 100 {
		t.Errorf("refusal refilled later: %v retry %s refill %s grant %d", d.Reason, d.RetryAfter, d.Refill, d.Grant)
	}
	d = chargeAt(t, e, t0, Request{Subject: "u", Action: "big"})
	if d.Reason != ReasonInsufficientBalance || d.RetryAfter != 0 {
		t.Errorf("a cost no refill covers: %v retry %s, want no RetryAfter", d.Reason, d.RetryAfter)
	}
}

func TestPeriodsStayWithinTimeArithmetic(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "ten years", in: "87840h"},
		{name: "one hour over ten years", in: "87841h", wantErr: true},
		{name: "the longest duration", in: "2562047h47m16.854775807s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePeriod(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePeriod(%q) = %v, %v; want error %v", tt.in, p, err, tt.wantErr)
			}
		})
	}
	cfg := testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"t": {Limits: []LimitConfig{{Period: Period{Every: math.MaxInt64}, Max: 1}}}}}}
	if err := cfg.Validate(); err == nil || !contains(err.Error(), "tiers.t.limits[0].period: must be at most 87840h0m0s") {
		t.Errorf("Validate() = %v, want the period refused", err)
	}
	// The longest period still decides with windows in the right order.
	cfg = testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"t": {Limits: []LimitConfig{{Period: Period{Every: MaxPeriod}, Max: 1, Mode: sliding()}}}}}}
	e := newEngine(t, cfg)
	if d := chargeAt(t, e, t0, Request{Subject: "u"}); !d.Allowed {
		t.Fatalf("first call refused: %v", d.Reason)
	}
	d := chargeAt(t, e, t0, Request{Subject: "u"})
	if d.Allowed || d.RetryAfter <= 0 || d.Binding.Reset.Before(t0) {
		t.Fatalf("second call: %v retry %s reset %s", d.Reason, d.RetryAfter, d.Binding.Reset)
	}
}
