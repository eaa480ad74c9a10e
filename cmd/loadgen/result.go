package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is the outcome of one run, as printed with --json. Times are in
// microseconds unless the name says otherwise. The counts, seconds and the
// histogram add up across runs (see merge); the rest is derived from them.
type Result struct {
	Name        string   `json:"name"`
	Addrs       []string `json:"addrs"`
	Conns       int      `json:"conns"`
	Concurrency int      `json:"concurrency"`
	Users       int      `json:"users"`
	Runs        int      `json:"runs"` // 1, or how many runs were merged
	Rate        float64  `json:"rate"` // the paced rate in Checks/s; 0 for a closed loop
	WarmupSec   float64  `json:"warmup_seconds"`
	WindowSec   float64  `json:"window_seconds"`
	// Mix is the workload (--mix) and TraceSampled the share of
	// traceparents flagged sampled (--trace-sampled).
	Mix          string  `json:"mix,omitempty"`
	TraceSampled float64 `json:"trace_sampled"`

	// Checks is every Check completed in the window: OK + Denied + Errors.
	Checks       int64            `json:"checks"`
	OK           int64            `json:"ok"`
	Denied       int64            `json:"denied"`
	DeniedStatus map[string]int64 `json:"denied_by_status"`
	Errors       int64            `json:"errors"`
	ErrorCodes   map[string]int64 `json:"errors_by_code,omitempty"`
	FirstError   string           `json:"first_error,omitempty"`
	DeniedPct    float64          `json:"denied_percent"`
	ChecksPerSec float64          `json:"checks_per_second"`

	Latency Latency `json:"latency_us"`
	// Histogram is the latency histogram's non-empty buckets as
	// [bucket index, count] pairs, so that runs can be merged exactly.
	Histogram [][2]uint64 `json:"histogram"`

	// ServerPIDs are the processes whose CPU is charged; empty when none
	// was given, and then the server CPU fields are zero.
	ServerPIDs         []int   `json:"server_pids,omitempty"`
	ServerCPUSec       float64 `json:"server_cpu_seconds"`
	ServerCPUPerCheck  float64 `json:"server_cpu_per_check_us"`
	ServerCores        float64 `json:"server_cores"` // CPU seconds per wall second
	LoadgenCPUSec      float64 `json:"loadgen_cpu_seconds"`
	LoadgenCPUPerCheck float64 `json:"loadgen_cpu_per_check_us"`
	// ServerCycles and ServerInstructions are what perf stat counted for
	// the server processes (--perf), and the per-Check figures are in
	// thousands; all zero without --perf.
	ServerCycles          float64 `json:"server_cycles,omitempty"`
	ServerInstructions    float64 `json:"server_instructions,omitempty"`
	ServerKCyclesPerCheck float64 `json:"server_kcycles_per_check,omitempty"`
	ServerKInstrPerCheck  float64 `json:"server_kinstructions_per_check,omitempty"`

	// RedisCalls is the commands the --redis server ran in the window
	// (INFO commandstats), those run by scripts included, and
	// RedisScripts the scripts (EVAL, EVALSHA, FCALL) among them, each one
	// round trip; zero without --redis.
	RedisCalls           int64   `json:"redis_calls,omitempty"`
	RedisScripts         int64   `json:"redis_scripts,omitempty"`
	RedisCallsPerCheck   float64 `json:"redis_calls_per_check,omitempty"`
	RedisScriptsPerCheck float64 `json:"redis_scripts_per_check,omitempty"`
}

// Latency is a latency distribution in microseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func newResult(cfg driveConfig, win window, stats []*callerStats) Result {
	r := Result{
		Name: cfg.Name, Addrs: cfg.Addrs, Conns: cfg.Conns, Concurrency: cfg.Concurrency,
		Users: cfg.Workload.Users, Mix: cfg.Workload.Mix.String(), TraceSampled: cfg.Workload.TraceSampled, Runs: 1, Rate: cfg.Rate, WarmupSec: cfg.Warmup.Seconds(), WindowSec: win.wall.Seconds(),
		DeniedStatus: map[string]int64{}, ErrorCodes: map[string]int64{}, ServerPIDs: cfg.ServerPIDs,
		ServerCPUSec:       ticksToDuration(win.server.Total(), cfg.ClkTck).Seconds(),
		LoadgenCPUSec:      ticksToDuration(win.self.Total(), cfg.ClkTck).Seconds(),
		ServerCycles:       win.perf.Cycles,
		ServerInstructions: win.perf.Instructions,
		RedisCalls:         win.redis.Calls,
		RedisScripts:       win.redis.Scripts,
	}
	var h histogram
	for _, st := range stats {
		h.Merge(&st.hist)
		r.OK += st.ok
		for code, n := range st.denied {
			r.DeniedStatus[strconv.Itoa(int(code))] += n
			r.Denied += n
		}
		for code, n := range st.errs {
			r.ErrorCodes[code] += n
			r.Errors += n
		}
		if st.firstErr != nil && r.FirstError == "" {
			r.FirstError = st.firstErr.Error()
		}
	}
	r.Checks = r.OK + r.Denied + r.Errors
	r.derive(&h)
	return r
}

// derive computes the derived fields from the sums and h.
func (r *Result) derive(h *histogram) {
	r.Histogram = h.sparse()
	r.Latency = Latency{
		Mean: micros(h.Mean()), P50: micros(h.Quantile(0.50)), P90: micros(h.Quantile(0.90)),
		P99: micros(h.Quantile(0.99)), P999: micros(h.Quantile(0.999)), Max: micros(h.Max()),
	}
	if r.Checks == 0 || r.WindowSec <= 0 {
		return
	}
	n := float64(r.Checks)
	r.DeniedPct = 100 * float64(r.Denied) / n
	r.ChecksPerSec = n / r.WindowSec
	r.ServerCPUPerCheck = 1e6 * r.ServerCPUSec / n
	r.ServerCores = r.ServerCPUSec / r.WindowSec
	r.LoadgenCPUPerCheck = 1e6 * r.LoadgenCPUSec / n
	r.ServerKCyclesPerCheck = r.ServerCycles / 1e3 / n
	r.ServerKInstrPerCheck = r.ServerInstructions / 1e3 / n
	r.RedisCallsPerCheck = float64(r.RedisCalls) / n
	r.RedisScriptsPerCheck = float64(r.RedisScripts) / n
}

// merge returns the results of several runs of the same server as one:
// counts and seconds add up, and the latencies come from the merged
// histograms.
func merge(rs []Result) Result {
	m := rs[0]
	m.DeniedStatus, m.ErrorCodes = map[string]int64{}, map[string]int64{}
	m.Runs, m.WindowSec, m.ServerCPUSec, m.LoadgenCPUSec = 0, 0, 0, 0
	m.ServerCycles, m.ServerInstructions = 0, 0
	m.Checks, m.OK, m.Denied, m.Errors, m.RedisCalls, m.RedisScripts = 0, 0, 0, 0, 0, 0
	var h histogram
	var maxNs int64
	for _, r := range rs {
		m.Runs += max(r.Runs, 1)
		m.WindowSec += r.WindowSec
		m.ServerCPUSec += r.ServerCPUSec
		m.LoadgenCPUSec += r.LoadgenCPUSec
		m.ServerCycles += r.ServerCycles
		m.ServerInstructions += r.ServerInstructions
		m.Checks += r.Checks
		m.OK += r.OK
		m.Denied += r.Denied
		m.Errors += r.Errors
		m.RedisCalls += r.RedisCalls
		m.RedisScripts += r.RedisScripts
		for k, n := range r.DeniedStatus {
			m.DeniedStatus[k] += n
		}
		for k, n := range r.ErrorCodes {
			m.ErrorCodes[k] += n
		}
		if m.FirstError == "" {
			m.FirstError = r.FirstError
		}
		h.addSparse(r.Histogram)
		maxNs = max(maxNs, int64(r.Latency.Max*1e3))
	}
	if maxNs > 0 && maxNs <= h.max {
		h.max = maxNs // exact, where the buckets only bound it
	}
	m.derive(&h)
	return m
}

// WriteText prints r for a person.
func (r Result) WriteText(w io.Writer) error {
	var b strings.Builder
	pace := "closed loop"
	if r.Rate > 0 {
		pace = fmt.Sprintf("paced at %.0f/s", r.Rate)
	}
	fmt.Fprintf(&b, "%s: %d callers over %d connections to %s (%s), %d users, %.0fs warm-up, %.1fs measured\n",
		r.Name, r.Concurrency, r.Conns, strings.Join(r.Addrs, ","), pace, r.Users, r.WarmupSec, r.WindowSec)
	fmt.Fprintf(&b, "  checks      %d (%.0f/s)\n", r.Checks, r.ChecksPerSec)
	fmt.Fprintf(&b, "  denied      %d (%.2f%%) %s\n", r.Denied, r.DeniedPct, countsText(r.DeniedStatus))
	fmt.Fprintf(&b, "  errors      %d %s\n", r.Errors, countsText(r.ErrorCodes))
	if r.FirstError != "" {
		fmt.Fprintf(&b, "  first error %s\n", r.FirstError)
	}
	l := r.Latency
	fmt.Fprintf(&b, "  latency µs  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  mean %.0f\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if len(r.ServerPIDs) > 0 {
		fmt.Fprintf(&b, "  server CPU  %.2fs (%.2f cores), %.2f µs per Check (pids %v)\n",
			r.ServerCPUSec, r.ServerCores, r.ServerCPUPerCheck, r.ServerPIDs)
	}
	fmt.Fprintf(&b, "  loadgen CPU %.2f µs per Check\n", r.LoadgenCPUPerCheck)
	if r.RedisCalls > 0 {
		fmt.Fprintf(&b, "  redis       %.3f scripts and %.3f commands (scripts' included) per Check\n",
			r.RedisScriptsPerCheck, r.RedisCallsPerCheck)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func countsText(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return "(" + strings.Join(parts, " ") + ")"
}
