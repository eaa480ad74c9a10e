package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseComparison(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    comparison
		wantErr bool
	}{
		{name: "ok", in: "quotagate/noop<=1.30", want: comparison{Name: "quotagate", Baseline: "noop", Max: 1.3}},
		{name: "no ratio", in: "quotagate/noop", wantErr: true},
		{name: "no baseline", in: "quotagate<=1.3", wantErr: true},
		{name: "bad ratio", in: "a/b<=x", wantErr: true},
		{name: "zero ratio", in: "a/b<=0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseComparison(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseComparison(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseComparison(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	results := []Result{
		{Name: "noop", ChecksPerSec: 10000, ServerCPUPerCheck: 20},
		{Name: "quotagate", ChecksPerSec: 9000, ServerCPUPerCheck: 25},
	}
	tests := []struct {
		name       string
		cmps       []comparison
		wantMissed int
		wantLine   string
	}{
		{name: "met", cmps: []comparison{{"quotagate", "noop", 1.3}}, wantLine: "quotagate/noop server CPU per Check: 1.250x (+5.0 µs)  target <= 1.30x  met"},
		{name: "missed", cmps: []comparison{{"quotagate", "noop", 1.2}}, wantMissed: 1, wantLine: "target <= 1.20x  MISSED"},
		{name: "missing result", cmps: []comparison{{"sqlite", "quotagate", 1.2}}, wantMissed: 1, wantLine: "sqlite/quotagate: cannot compare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			missed, err := writeTable(&out, results, tt.cmps)
			if err != nil {
				t.Fatal(err)
			}
			if missed != tt.wantMissed {
				t.Errorf("missed = %d, want %d", missed, tt.wantMissed)
			}
			if !strings.Contains(out.String(), tt.wantLine) {
				t.Errorf("output lacks %q:\n%s", tt.wantLine, out.String())
			}
		})
	}
}

// TestWriteTableRounds: with three rounds or more a comparison is judged by
// the median of its per-round ratios, so one noisy round does not decide
// it; with two, by the merged runs.
func TestWriteTableRounds(t *testing.T) {
	// rounds returns a base run and a variant run per round, with the
	// given CPU per Check; every run has the same number of Checks.
	rounds := func(base, variant []float64) []Result {
		var out []Result
		for k := range base {
			out = append(out,
				Result{Name: "quotagate", Runs: 1, Checks: 1000, WindowSec: 1, ServerPIDs: []int{1}, ServerCPUSec: base[k] * 1e-3, ServerCPUPerCheck: base[k]},
				Result{Name: "redis-1", Runs: 1, Checks: 1000, WindowSec: 1, ServerPIDs: []int{1}, ServerCPUSec: variant[k] * 1e-3, ServerCPUPerCheck: variant[k]})
		}
		return out
	}
	tests := []struct {
		name       string
		results    []Result
		wantMissed int
		wantLine   string
	}{
		{
			name: "one noisy round of three: the median meets the target, the merged ratio would not",
			// Merged: (150+150+600)/(100+100+100) = 3.0x; per round 1.5, 1.5, 6.0.
			results:  rounds([]float64{100, 100, 100}, []float64{150, 150, 600}),
			wantLine: "3.000x (+200.0 µs); per round 1.50x 1.50x 6.00x, median 1.500x  target <= 2.00x  met (median of 3 rounds)",
		},
		{
			name: "two rounds of three over the target: missed, whatever the merged ratio",
			// Merged: (210+210+100)/(100+100+200) = 1.3x; per round 2.1, 2.1, 0.5.
			results:    rounds([]float64{100, 100, 200}, []float64{210, 210, 100}),
			wantMissed: 1,
			wantLine:   "per round 2.10x 2.10x 0.50x, median 2.100x  target <= 2.00x  MISSED (median of 3 rounds)",
		},
		{
			name:       "two rounds: judged by the merged runs",
			results:    rounds([]float64{100, 100}, []float64{150, 300}),
			wantMissed: 1,
			wantLine:   "2.250x (+125.0 µs); per round 1.50x 3.00x, median 2.250x  target <= 2.00x  MISSED\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.results {
				tt.results[i].derive(&histogram{})
			}
			var out strings.Builder
			missed, err := writeTable(&out, tt.results, []comparison{{"redis-1", "quotagate", 2}})
			if err != nil {
				t.Fatal(err)
			}
			if missed != tt.wantMissed || !strings.Contains(out.String(), tt.wantLine) {
				t.Errorf("missed %d (want %d); output lacks %q:\n%s", missed, tt.wantMissed, tt.wantLine, out.String())
			}
		})
	}
}

func TestMergeRuns(t *testing.T) {
	run := func(checks int64, cpuSec float64, lat time.Duration) Result {
		var h histogram
		for range checks {
			h.Record(lat)
		}
		r := Result{Name: "quotagate", Runs: 1, Checks: checks, OK: checks - 10, Denied: 10,
			DeniedStatus: map[string]int64{"429": 10}, WindowSec: 10, ServerCPUSec: cpuSec}
		r.derive(&h)
		return r
	}
	rows := group([]Result{run(1000, 0.02, 100*time.Microsecond), {Name: "noop", Runs: 1}, run(3000, 0.04, 300*time.Microsecond)})
	if len(rows) != 2 || rows[0].Name != "quotagate" || rows[1].Name != "noop" {
		t.Fatalf("group = %d rows, want quotagate then noop", len(rows))
	}
	m := rows[0]
	tests := []struct {
		name      string
		got, want float64
	}{
		{name: "runs", got: float64(m.Runs), want: 2},
		{name: "checks", got: float64(m.Checks), want: 4000},
		{name: "denied 429", got: float64(m.DeniedStatus["429"]), want: 20},
		{name: "checks/s over both windows", got: m.ChecksPerSec, want: 200},
		{name: "CPU per Check is total CPU over total Checks", got: m.ServerCPUPerCheck, want: 15},
		{name: "range low", got: m.minCPU, want: 13.333333333333334},
		{name: "range high", got: m.maxCPU, want: 20},
		{name: "p50 from the merged histogram", got: m.Latency.P50, want: 300},
		{name: "max is exact", got: m.Latency.Max, want: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if math.Abs(tt.got-tt.want) > 0.02*tt.want {
				t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
			}
		})
	}
}

func TestWriteRatioTable(t *testing.T) {
	results := []Result{
		{Name: "noop-plain", Mix: "get", Checks: 1e6, WindowSec: 10, ServerCPUSec: 20, ServerCPUPerCheck: 20},
		{Name: "noop", Mix: "default", Checks: 1e6, WindowSec: 10, ServerCPUSec: 16, ServerCPUPerCheck: 16},
		{Name: "q-get", Mix: "get", TraceSampled: 0.01, Checks: 1e6, WindowSec: 10, ServerCPUSec: 24, ServerCPUPerCheck: 24},
		{Name: "noop-plain", Mix: "get", Checks: 1e6, WindowSec: 10, ServerCPUSec: 25, ServerCPUPerCheck: 25},
		{Name: "noop", Mix: "default", Checks: 1e6, WindowSec: 10, ServerCPUSec: 20, ServerCPUPerCheck: 20},
		{Name: "q-get", Mix: "get", TraceSampled: 0.01, Checks: 1e6, WindowSec: 10, ServerCPUSec: 35, ServerCPUPerCheck: 35},
		{Name: "noop-plain", Mix: "get", Checks: 1e6, WindowSec: 10, ServerCPUSec: 20, ServerCPUPerCheck: 20},
		{Name: "noop", Mix: "default", Checks: 1e6, WindowSec: 10, ServerCPUSec: 20, ServerCPUPerCheck: 20},
		{Name: "q-get", Mix: "get", TraceSampled: 0.01, Checks: 1e6, WindowSec: 10, ServerCPUSec: 26, ServerCPUPerCheck: 26},
	}
	tests := []struct {
		name      string
		bases     []string
		wantLines map[string][]string // server: fields its line must hold
	}{
		{name: "plain baseline: median of the per-round ratios", bases: []string{"noop-plain"}, wantLines: map[string][]string{
			"q-get":      {"get", "1%", "28.33", "1.30x", "1.20 1.40 1.30"},
			"noop-plain": {"1.00x", "1.00 1.00 1.00"},
		}},
		{name: "tuned baseline as a second column", bases: []string{"noop-plain", "noop"}, wantLines: map[string][]string{
			"q-get": {"1.30x", "1.50x", "1.50 1.75 1.30"},
		}},
		{name: "missing baseline", bases: []string{"absent"}, wantLines: map[string][]string{
			"q-get": {"28.33         0       -                   -"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if err := writeRatioTable(&out, results, tt.bases); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(out.String(), "\n")
			for server, fields := range tt.wantLines {
				var line string
				for _, l := range lines {
					if strings.HasPrefix(l, server+" ") {
						line = l
					}
				}
				for _, f := range fields {
					if !strings.Contains(line, f) {
						t.Errorf("line of %s %q lacks %q; table:\n%s", server, line, f, out.String())
					}
				}
			}
		})
	}
}
