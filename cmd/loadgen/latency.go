package main

import (
	"fmt"
	"io"
	"time"
)

// latencyComparison is "NAME's p99 latency is at most Over above
// BASELINE's, at the same offered load".
type latencyComparison struct {
	Name, Baseline string
	Over           time.Duration
}

// parseLatencyComparison parses NAME/BASELINE<=+DURATION, e.g.
// quotagate/noop-plain<=+1ms.
func parseLatencyComparison(s string) (latencyComparison, error) {
	name, base, over, ok := splitComparison(s, "<=+")
	if !ok {
		return latencyComparison{}, fmt.Errorf("loadgen: --compare-p99 %q: want NAME/BASELINE<=+DURATION, e.g. quotagate/noop-plain<=+1ms", s)
	}
	d, err := time.ParseDuration(over)
	if err != nil || d < 0 {
		return latencyComparison{}, fmt.Errorf("loadgen: --compare-p99 %q: %q is not a duration of 0 or more, such as 1ms", s, over)
	}
	return latencyComparison{Name: name, Baseline: base, Over: d}, nil
}

// writeLatencyComparisons prints one line per comparison of p99 latency
// and returns how many missed their target. Latency is compared only
// between servers paced to the same --rate: in a closed loop a slower
// server is sent fewer Checks, and waits less in its queue for them. Such
// a comparison is reported as not judged, not as missed. As with CPU, the
// verdict is the median of the per-round differences from three rounds
// on (each round's run against the baseline's run of the same round), and
// the difference of the merged runs before.
func writeLatencyComparisons(w io.Writer, results []Result, cmps []latencyComparison) int {
	byName := map[string]row{}
	for _, r := range group(results) {
		byName[r.Name] = r
	}
	missed := 0
	for _, c := range cmps {
		target := fmt.Sprintf("target <= +%v", c.Over)
		r, ok1 := byName[c.Name]
		base, ok2 := byName[c.Baseline]
		if !ok1 || !ok2 {
			fmt.Fprintf(w, "%s/%s p99: cannot compare: a result is missing  %s  MISSED\n", c.Name, c.Baseline, target)
			missed++
			continue
		}
		if rate := r.runs[0].Rate; rate <= 0 || !sameRate(r.runs, rate) || !sameRate(base.runs, rate) {
			fmt.Fprintf(w, "%s/%s p99: not judged: latency is compared only at the same offered load; run both at one --rate (BENCH_RATE for make bench)  %s\n",
				c.Name, c.Baseline, target)
			continue
		}
		diff := r.Latency.P99 - base.Latency.P99 // µs
		var rounds []float64
		for k := range min(len(r.runs), len(base.runs)) {
			rounds = append(rounds, r.runs[k].Latency.P99-base.runs[k].Latency.P99)
		}
		judged, by := judge(diff, rounds)
		verdict := verdictOf(judged > float64(c.Over.Microseconds()), &missed)
		perRound := roundsText(rounds,
			func(x float64) string { return fmt.Sprintf(" %+.2f", x/1e3) },
			func(m float64) string { return fmt.Sprintf(" ms, median %+.2f ms", m/1e3) })
		fmt.Fprintf(w, "%s/%s p99 at %g Checks/s: %.2f ms against %.2f ms (%+.2f ms)%s  %s  %s%s\n",
			c.Name, c.Baseline, r.runs[0].Rate, r.Latency.P99/1e3, base.Latency.P99/1e3, diff/1e3, perRound, target, verdict, by)
	}
	return missed
}

// sameRate reports whether every run was paced to rate.
func sameRate(runs []Result, rate float64) bool {
	for _, r := range runs {
		if r.Rate != rate {
			return false
		}
	}
	return true
}
