package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run parses args and runs the load, or, with "table" first, prints the
// comparison of saved results.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "table" {
		return runTable(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "otlp-sink" {
		return runOTLPSink(ctx, args[1:], stdout, stderr)
	}
	cfg, asJSON, maxErrRate, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	res, err := drive(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("loadgen: write result: %w", err)
	}
	if res.Checks == 0 {
		return errors.New("loadgen: no Check completed in the measured window; is the server overloaded or stuck?")
	}
	if rate := float64(res.Errors) / float64(res.Checks); rate > maxErrRate {
		return fmt.Errorf("loadgen: %.2f%% of Checks failed (more than --max-error-rate %g); first: %s", 100*rate, maxErrRate, res.FirstError)
	}
	return nil
}

const usage = `Usage: loadgen [flags]
       loadgen table [--compare NAME/BASELINE<=RATIO]... [--compare-p99 NAME/BASELINE<=+DURATION]... [--strict] RESULT.json...
       loadgen otlp-sink [--addr HOST:PORT]

loadgen drives Envoy ext_authz Check calls at a server: --concurrency callers,
each with one Check in flight (a closed loop, or paced to --rate), over --conns
gRPC connections, for --duration after --warmup. Requests are shaped as Envoy sends them (full AttributeContext,
jwt_authn metadata, x-user-id, context_extensions action, JSON bodies of
log-normal word counts) for --users users; --free-share of them go to the
first --free-users users, who are freemium in testdata/bench.yaml and so are
denied once their hour is used up. It prints checks/s, latency percentiles,
denials and errors, and with --server-pid the server's CPU time per Check
from /proc/PID/stat over exactly the measured window.

"loadgen table" prints saved --json results side by side, with the ratio of
server CPU per Check for each --compare, and the difference of p99 latency
for each --compare-p99 (judged only between runs paced to one --rate).

"loadgen otlp-sink" serves the OTLP/gRPC trace and metrics services on
--addr, accepting and discarding every export, until interrupted; it then
prints how many spans and metric exports it received.

Flags:
`

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (driveConfig, bool, float64, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var c driveConfig
	addrs := fs.String("addr", envOr(getenv, "LOADGEN_ADDR", "127.0.0.1:9191"), "comma-separated server `addresses` (env LOADGEN_ADDR); connections are spread over them")
	pids := fs.String("server-pid", "", "comma-separated `pids` whose user+system CPU time is charged to the server(s)")
	fs.StringVar(&c.Name, "name", "server", "label of the server under test, printed and in the JSON")
	fs.IntVar(&c.Conns, "conns", 4, "gRPC connections")
	fs.Float64Var(&c.Rate, "rate", 0, "pace the callers to this many Checks/s in all (0: closed loop, as fast as answered)")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "concurrent callers, each with one Check in flight")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "load before the measured window (not measured)")
	fs.BoolVar(&c.Prime, "prime", false, "before the warm-up, send every server one Check per user, so that the window measures servers that have seen every user")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "length of the measured window")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", 15*time.Second, "how long to wait for the server to answer a first Check")
	fs.IntVar(&c.ClkTck, "clk-tck", 100, "clock ticks per second in /proc/PID/stat (getconf CLK_TCK)")
	fs.IntVar(&c.Workload.Users, "users", 10000, "distinct users (user-00000 onwards)")
	fs.IntVar(&c.Workload.FreeUsers, "free-users", 20, "the first N users are freemium in the benchmark config")
	fs.Float64Var(&c.Workload.FreeShare, "free-share", 0.05, "fraction of Checks sent to the freemium users")
	fs.IntVar(&c.Workload.MaxBodyBytes, "max-body-bytes", 65536, "Envoy's max_request_bytes: longer bodies are sent cut and flagged partial")
	fs.Uint64Var(&c.Workload.Seed, "seed", 1, "random seed of the workload")
	fs.Float64Var(&c.Workload.TraceSampled, "trace-sampled", 0.01, "fraction of requests whose traceparent is flagged sampled (Envoy traced them; 0.01 is Istio's default)")
	fs.Var(&c.Workload.Mix, "mix", "`workload`: default (45% translate, 35% summarize, 20% GET), get (GETs without a body only) or translate (POST translate with 300-word bodies only)")
	fs.StringVar(&c.RedisAddr, "redis", "", "`host:port` of a Redis server whose commands (INFO commandstats) are counted over the measured window")
	fs.StringVar(&c.PerfPath, "perf", "", "`path` of perf: count the servers' CPU cycles and instructions over the measured window with perf stat: instructions barely vary between runs, a cross-check of CPU time (which the counting inflates on a virtual machine)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	maxErrRate := fs.Float64("max-error-rate", 0.01, "exit non-zero when more than this fraction of Checks fail")
	if err := fs.Parse(args); err != nil {
		return c, false, 0, err
	}
	if fs.NArg() > 0 {
		return c, false, 0, fmt.Errorf("loadgen: unexpected argument %q; see --help", fs.Arg(0))
	}
	for a := range strings.SplitSeq(*addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Addrs = append(c.Addrs, a)
		}
	}
	var err error
	if c.ServerPIDs, err = parsePIDs(*pids); err != nil {
		return c, false, 0, err
	}
	return c, *asJSON, *maxErrRate, c.validate()
}

func (c driveConfig) validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("loadgen: --addr is empty; give host:port of the server"))
	}
	if c.Conns <= 0 || c.Concurrency <= 0 {
		errs = append(errs, fmt.Errorf("loadgen: --conns and --concurrency must be > 0, got %d and %d", c.Conns, c.Concurrency))
	}
	if c.Duration <= 0 || c.Warmup < 0 || c.ReadyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("loadgen: --duration and --ready-timeout must be > 0 and --warmup >= 0, got %s, %s and %s", c.Duration, c.ReadyTimeout, c.Warmup))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("loadgen: --rate must be >= 0, got %g", c.Rate))
	}
	if c.ClkTck <= 0 {
		errs = append(errs, fmt.Errorf("loadgen: --clk-tck must be > 0, got %d; use $(getconf CLK_TCK)", c.ClkTck))
	}
	return errors.Join(errs...)
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("loadgen: --server-pid: %q is not a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
