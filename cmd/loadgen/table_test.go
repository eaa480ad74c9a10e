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
