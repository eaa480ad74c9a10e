package main

import (
	"strings"
	"testing"
)

func TestParsePerfCSV(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    perfCounts
		wantErr string
	}{
		{name: "both", out: "1200000,,cycles,100.00,,\n900000,,instructions,100.00,0.75,insn per cycle\n",
			want: perfCounts{Cycles: 1.2e6, Instructions: 9e5}},
		{name: "user-only event names", out: "500,,cycles:u,100.00,,\n400,,instructions:u,100.00,,\n",
			want: perfCounts{Cycles: 500, Instructions: 400}},
		{name: "perf's notes are ignored", out: "\n# started on Fri\n7,,cycles,100.00,,\n3,,instructions,100.00,,\n",
			want: perfCounts{Cycles: 7, Instructions: 3}},
		{name: "not supported", out: "<not supported>,,cycles,0,100.00,,\n", wantErr: "could not count cycles"},
		{name: "nothing", out: "Error: no such process\n", wantErr: "no cycle count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePerfCSV(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parsePerfCSV error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parsePerfCSV = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestWriteTableCycles(t *testing.T) {
	results := []Result{
		{Name: "quotagate", Checks: 1000, WindowSec: 1, ServerCPUSec: 0.1, ServerCycles: 2e8, ServerInstructions: 1e8},
		{Name: "sqlite", Checks: 1000, WindowSec: 1, ServerCPUSec: 0.13, ServerCycles: 2.2e8, ServerInstructions: 1.2e8},
	}
	for i := range results {
		results[i].derive(&histogram{})
	}
	var out strings.Builder
	missed, err := writeTable(&out, results, []comparison{{"sqlite", "quotagate", 1.2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kcycles/Check",
		"sqlite/quotagate server CPU per Check: 1.300x (+30.0 µs)  target <= 1.20x  MISSED",
		"sqlite/quotagate server instructions per Check: 1.200x (+20.0 k)  cross-check of the target <= 1.20x",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if missed != 1 {
		t.Errorf("missed = %d, want 1: the verdict is CPU time's", missed)
	}
}
