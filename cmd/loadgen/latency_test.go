package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseLatencyComparison(t *testing.T) {
	tests := []struct {
		in      string
		want    latencyComparison
		wantErr bool
	}{
		{in: "quotagate/noop-plain<=+1ms", want: latencyComparison{"quotagate", "noop-plain", time.Millisecond}},
		{in: "a/b<=+0s", want: latencyComparison{"a", "b", 0}},
		{in: "a/b<=+1500us", want: latencyComparison{"a", "b", 1500 * time.Microsecond}},
		{in: "a/b<=1ms", wantErr: true}, // a ratio's syntax, not a latency's
		{in: "a<=+1ms", wantErr: true},
		{in: "/b<=+1ms", wantErr: true},
		{in: "a/b<=+1", wantErr: true},
		{in: "a/b<=+-1ms", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseLatencyComparison(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseLatencyComparison(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("parseLatencyComparison(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if err != nil && !strings.Contains(err.Error(), "--compare-p99") {
			t.Errorf("error %q does not name the flag", err)
		}
	}
}

// TestWriteLatencyComparisons: p99 is judged only between runs paced to
// one rate, by the median of the per-round differences from three rounds.
func TestWriteLatencyComparisons(t *testing.T) {
	// runs returns one run per round of a server paced to rate, with the
	// given p99 in ms.
	runs := func(name string, rate float64, p99ms ...float64) []Result {
		var out []Result
		for _, ms := range p99ms {
			out = append(out, Result{Name: name, Runs: 1, Rate: rate, Latency: Latency{P99: ms * 1e3}})
		}
		return out
	}
	interleave := func(a, b []Result) []Result {
		var out []Result
		for k := range a {
			out = append(out, a[k], b[k])
		}
		return out
	}
	cmp := []latencyComparison{{"quotagate", "noop-plain", time.Millisecond}}
	tests := []struct {
		name       string
		results    []Result
		wantMissed int
		wantLine   string
	}{
		{
			name:     "met by the median: one noisy round of three does not decide",
			results:  interleave(runs("noop-plain", 6000, 2, 2, 2), runs("quotagate", 6000, 2.5, 2.8, 9)),
			wantLine: "per round +0.50 +0.80 +7.00 ms, median +0.80 ms  target <= +1ms  met (median of 3 rounds)",
		},
		{
			name:       "missed",
			results:    interleave(runs("noop-plain", 6000, 2, 2, 2), runs("quotagate", 6000, 4, 3.5, 2.5)),
			wantMissed: 1,
			wantLine:   "median +1.50 ms  target <= +1ms  MISSED (median of 3 rounds)",
		},
		{
			name:     "closed loop: not judged, not missed",
			results:  interleave(runs("noop-plain", 0, 2, 2, 2), runs("quotagate", 0, 9, 9, 9)),
			wantLine: "quotagate/noop-plain p99: not judged: latency is compared only at the same offered load",
		},
		{
			name:     "different rates: not judged",
			results:  interleave(runs("noop-plain", 3000, 2, 2, 2), runs("quotagate", 6000, 9, 9, 9)),
			wantLine: "not judged",
		},
		{
			name:       "a result missing",
			results:    runs("noop-plain", 6000, 2, 2, 2),
			wantMissed: 1,
			wantLine:   "quotagate/noop-plain p99: cannot compare: a result is missing  target <= +1ms  MISSED",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			missed := writeLatencyComparisons(&out, tt.results, cmp)
			if missed != tt.wantMissed || !strings.Contains(out.String(), tt.wantLine) {
				t.Errorf("missed %d (want %d); output lacks %q:\n%s", missed, tt.wantMissed, tt.wantLine, out.String())
			}
		})
	}
}
