package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// comparison is "NAME's server CPU per Check is at most Max times
// BASELINE's".
type comparison struct {
	Name, Baseline string
	Max            float64
}

// parseComparison parses NAME/BASELINE<=RATIO, e.g. quotagate/noop<=1.30.
func parseComparison(s string) (comparison, error) {
	name, base, ratio, ok := splitComparison(s, "<=")
	if !ok {
		return comparison{}, fmt.Errorf("loadgen: --compare %q: want NAME/BASELINE<=RATIO, e.g. quotagate/noop<=1.30", s)
	}
	max, err := strconv.ParseFloat(ratio, 64)
	if err != nil || max <= 0 {
		return comparison{}, fmt.Errorf("loadgen: --compare %q: ratio %q is not a positive number", s, ratio)
	}
	return comparison{Name: name, Baseline: base, Max: max}, nil
}

// splitComparison splits NAME/BASELINE<op>LIMIT; ok is false when a part
// is missing.
func splitComparison(s, op string) (name, base, limit string, ok bool) {
	pair, limit, ok1 := strings.Cut(s, op)
	name, base, ok2 := strings.Cut(pair, "/")
	return name, base, limit, ok1 && ok2 && name != "" && base != ""
}

// repeated is a flag that may be given many times: each value is parsed
// and appended to *list.
type repeated[T any] struct {
	list  *[]T
	parse func(string) (T, error)
}

func (r repeated[T]) String() string {
	if r.list == nil || len(*r.list) == 0 {
		return "" // no "(default [])" in the usage
	}
	return fmt.Sprint(*r.list)
}

func (r repeated[T]) Set(s string) error {
	v, err := r.parse(s)
	if err != nil {
		return err
	}
	*r.list = append(*r.list, v)
	return nil
}

// runTable implements "loadgen table".
func runTable(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var cmps []comparison
	fs.Var(repeated[comparison]{&cmps, parseComparison}, "compare", "`NAME/BASELINE<=RATIO`: print NAME's server CPU per Check over BASELINE's against the target (repeatable)")
	var p99s []latencyComparison
	fs.Var(repeated[latencyComparison]{&p99s, parseLatencyComparison}, "compare-p99", "`NAME/BASELINE<=+DURATION`: print NAME's p99 latency against BASELINE's plus DURATION, judged only when both ran at one --rate (repeatable)")
	strict := fs.Bool("strict", false, "exit non-zero when a target is missed")
	var bases []string
	fs.Var(repeated[string]{&bases, parseBaseline}, "baseline", "`NAME`: also print every server's CPU per Check as a ratio of NAME's, the median of the per-round ratios with each round's (repeatable: one column each)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var results []Result
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("loadgen: table: %w", err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("loadgen: table: %s is not a loadgen --json result: %w", path, err)
		}
		results = append(results, r)
	}
	missed, err := writeTable(stdout, results, cmps)
	if err != nil {
		return err
	}
	missed += writeLatencyComparisons(stdout, results, p99s)
	if len(bases) > 0 {
		fmt.Fprintln(stdout)
		if err := writeRatioTable(stdout, results, bases); err != nil {
			return err
		}
	}
	if *strict && missed > 0 {
		return fmt.Errorf("loadgen: %d target(s) missed", missed)
	}
	return nil
}

// row is one server's merged runs, with the spread of its runs' CPU per
// Check.
type row struct {
	Result
	minCPU, maxCPU float64
	runs           []Result // the runs merged, in order: runs[k] is round k+1
}

// group merges the results by name, in the order names first appear.
func group(results []Result) []row {
	var order []string
	byName := map[string][]Result{}
	for _, r := range results {
		if _, ok := byName[r.Name]; !ok {
			order = append(order, r.Name)
		}
		byName[r.Name] = append(byName[r.Name], r)
	}
	rows := make([]row, 0, len(order))
	for _, name := range order {
		rs := byName[name]
		rw := row{Result: merge(rs), minCPU: rs[0].ServerCPUPerCheck, maxCPU: rs[0].ServerCPUPerCheck, runs: rs}
		for _, r := range rs {
			rw.minCPU = min(rw.minCPU, r.ServerCPUPerCheck)
			rw.maxCPU = max(rw.maxCPU, r.ServerCPUPerCheck)
		}
		rows = append(rows, rw)
	}
	return rows
}

// writeTable prints one row per server (its runs merged) and one line per
// comparison, and returns how many comparisons missed their target.
func writeTable(w io.Writer, results []Result, cmps []comparison) (int, error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	perf := false
	for _, r := range results {
		perf = perf || r.ServerCycles > 0
	}
	head := "server\truns\tchecks/s\tCPU/Check µs\t(runs' range)\tserver cores\tp50 µs\tp90 µs\tp99 µs\tdenied %\terrors\t"
	if perf {
		head += "kcycles/Check\tkinstr/Check\t"
	}
	fmt.Fprintln(tw, head)
	byName := map[string]row{}
	for _, r := range group(results) {
		byName[r.Name] = r
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.1f–%.1f\t%.2f\t%.0f\t%.0f\t%.0f\t%.2f\t%d\t", r.Name, r.Runs, r.ChecksPerSec,
			r.ServerCPUPerCheck, r.minCPU, r.maxCPU, r.ServerCores, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.DeniedPct, r.Errors)
		if perf {
			fmt.Fprintf(tw, "%.1f\t%.1f\t", r.ServerKCyclesPerCheck, r.ServerKInstrPerCheck)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return 0, fmt.Errorf("loadgen: table: %w", err)
	}
	for _, r := range group(results) {
		if r.RedisCalls > 0 {
			fmt.Fprintf(w, "%s Redis per Check: %.3f script calls (EVAL/EVALSHA, a round trip each), %.3f commands in all (those scripts run included)\n",
				r.Name, r.RedisScriptsPerCheck, r.RedisCallsPerCheck)
		}
	}
	missed := 0
	for _, c := range cmps {
		r, ok1 := byName[c.Name]
		base, ok2 := byName[c.Baseline]
		if !ok1 || !ok2 || base.ServerCPUPerCheck <= 0 {
			fmt.Fprintf(w, "%s/%s: cannot compare: a result is missing or has no server CPU  target <= %.2fx  MISSED\n", c.Name, c.Baseline, c.Max)
			missed++
			continue
		}
		ratio := r.ServerCPUPerCheck / base.ServerCPUPerCheck
		rounds := roundRatios(r.runs, base.runs)
		judged, by := judge(ratio, rounds)
		verdict := verdictOf(judged > c.Max, &missed)
		perRound := roundsText(rounds,
			func(x float64) string { return fmt.Sprintf(" %.2fx", x) },
			func(m float64) string { return fmt.Sprintf(", median %.3fx", m) })
		fmt.Fprintf(w, "%s/%s server CPU per Check: %.3fx (%+.1f µs)%s  target <= %.2fx  %s%s\n",
			c.Name, c.Baseline, ratio, r.ServerCPUPerCheck-base.ServerCPUPerCheck, perRound, c.Max, verdict, by)
		if r.ServerInstructions > 0 && base.ServerInstructions > 0 {
			// The same comparison in instructions (user and kernel):
			// they hardly move from run to run, whatever else the machine
			// does, but they do not see memory stalls, so they are a
			// steady cross-check, not the verdict.
			ir := r.ServerKInstrPerCheck / base.ServerKInstrPerCheck
			fmt.Fprintf(w, "%s/%s server instructions per Check: %.3fx (%+.1f k)  cross-check of the target <= %.2fx\n",
				c.Name, c.Baseline, ir, r.ServerKInstrPerCheck-base.ServerKInstrPerCheck, c.Max)
		}
	}
	return missed, nil
}

// minRoundsForMedian is the number of rounds from which a comparison is
// judged by the median of its per-round ratios rather than by the ratio of
// the merged runs: each round's variant ran within a minute of the
// baseline of the same round, so a ratio per round is immune to slow drift
// in the machine's load, and with three or more rounds one noisy round
// cannot decide the verdict.
const minRoundsForMedian = 3

// judge returns the figure a target is judged by: the median of the
// per-round figures from minRoundsForMedian rounds on, with a note saying
// so, and the merged runs' figure before.
func judge(merged float64, rounds []float64) (judged float64, by string) {
	if len(rounds) >= minRoundsForMedian {
		return median(rounds), fmt.Sprintf(" (median of %d rounds)", len(rounds))
	}
	return merged, ""
}

// verdictOf returns "MISSED", counted in missed, when over; else "met".
func verdictOf(over bool, missed *int) string {
	if over {
		*missed++
		return "MISSED"
	}
	return "met"
}

// roundsText returns "; per round", each round as item writes it and the
// median as med writes it; "" for fewer than two rounds.
func roundsText(rounds []float64, item, med func(float64) string) string {
	if len(rounds) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; per round")
	for _, x := range rounds {
		b.WriteString(item(x))
	}
	b.WriteString(med(median(rounds)))
	return b.String()
}

// roundRatios returns, for each round that both have, the server CPU per
// Check of runs over that of base (runs[k] and base[k] are round k+1).
func roundRatios(runs, base []Result) []float64 {
	var out []float64
	for k := range min(len(runs), len(base)) {
		if b := base[k].ServerCPUPerCheck; b > 0 && runs[k].ServerCPUPerCheck > 0 {
			out = append(out, runs[k].ServerCPUPerCheck/b)
		}
	}
	return out
}

// median returns the median of xs, which must not be empty.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func parseBaseline(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("loadgen: table: --baseline is empty; give the name of a server in the results, e.g. noop-plain")
	}
	return s, nil
}

// writeRatioTable prints issue 17's table: every server's CPU per Check
// (its runs merged) and, for each baseline, its ratio to the baseline's
// judged as the median of the per-round ratios (each round's run against
// the baseline's run of the same round), followed by those per-round
// ratios. A baseline missing from the results gets a column of "-".
func writeRatioTable(w io.Writer, results []Result, bases []string) error {
	rows := group(results)
	byName := map[string]row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "server\tmix\tsampled\tCPU µs/Check\tp99 µs\t"
	for _, b := range bases {
		head += "vs " + b + " (median)\tper round\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		mix := r.runs[0].Mix
		if mix == "" {
			mix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%g%%\t%.2f\t%.0f\t", r.Name, mix, 100*r.runs[0].TraceSampled, r.ServerCPUPerCheck, r.Latency.P99)
		for _, b := range bases {
			base, ok := byName[b]
			rounds := roundRatios(r.runs, base.runs)
			if !ok || len(rounds) == 0 {
				fmt.Fprint(tw, "-\t-\t")
				continue
			}
			per := make([]string, len(rounds))
			for i, x := range rounds {
				per[i] = fmt.Sprintf("%.2f", x)
			}
			fmt.Fprintf(tw, "%.2fx\t%s\t", median(rounds), strings.Join(per, " "))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("loadgen: table: %w", err)
	}
	return nil
}
