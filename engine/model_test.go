package engine

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestFixedWindowsAgainstModel drives random request times through fixed
// minute and hour limits, with and without reservations, and checks the
// engine against a direct count: a request is admitted to the time it may
// proceed (now + Delay), no window ever holds more than its maximum, and a
// request is refused only when it would not fit.
func TestFixedWindowsAgainstModel(t *testing.T) {
	for _, maxDelay := range []time.Duration{0, 30 * time.Second} {
		t.Run("max_delay="+maxDelay.String(), func(t *testing.T) {
			limits := map[Period]int64{minute: 3, hour: 20}
			e := newEngine(t, testConfig{Rules: Rules{Tiers: map[Tier]TierConfig{"standard": {
				Limits:   []LimitConfig{{Period: minute, Max: limits[minute]}, {Period: hour, Max: limits[hour]}},
				MaxDelay: maxDelay,
			}},
			}})
			rng := rand.New(rand.NewPCG(1, uint64(maxDelay)))
			counts := map[Period]map[int64]int64{minute: {}, hour: {}}
			fits := func(at time.Time) bool {
				for p, max := range limits {
					if counts[p][windowStart(at.UnixNano(), p, time.UTC)] >= max {
						return false
					}
				}
				return true
			}
			now := t0
			for i := range 3000 {
				now = now.Add(time.Duration(rng.IntN(20_000)) * time.Millisecond)
				d := chargeAt(t, e, now, Request{Subject: "alice"})
				if !d.Allowed {
					for _, at := range []time.Time{now, now.Truncate(time.Minute).Add(time.Minute), now.Truncate(time.Hour).Add(time.Hour)} {
						if at.Sub(now) <= maxDelay && fits(at) {
							t.Fatalf("request %d at %s refused though it fit at %s", i, now, at)
						}
					}
					continue
				}
				if d.Delay > maxDelay {
					t.Fatalf("request %d: delay %s over max_delay %s", i, d.Delay, maxDelay)
				}
				at := now.Add(d.Delay)
				if d.Delay == 0 && !fits(now) {
					t.Fatalf("request %d at %s admitted over a limit", i, now)
				}
				if !fits(at) {
					t.Fatalf("request %d admitted to %s over a limit", i, at)
				}
				for p := range limits {
					counts[p][windowStart(at.UnixNano(), p, time.UTC)]++
				}
			}
		})
	}
}
