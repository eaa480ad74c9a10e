package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/quotagate/quotagate/envoy"
)

const envoyConfigHelp = `Usage: quotagate envoy-config [flags]

Prints the Envoy configuration that puts quotagate in front of an API: the
ext_authz filter (gRPC, transport API V3, fail closed, request body sent for
word counting), the quotagate cluster (HTTP/2, gRPC health checked), and one
route per priced action or workflow of the quota config, whose
typed_per_filter_config sets the context_extensions quotagate reads
(action, workflow). A health route has ext_authz disabled. The body goes as
raw_body (pack_as_bytes), so a body cut mid-character is still decided.

It also sets the HttpConnectionManager's path normalization, which
quotagate's own routes table assumes: normalize_path, merge_slashes and
path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT, so that no spelling
of a priced path (/v1/%74ranslate, //v1/./translate) reaches it unpriced.
Keep --max-request-bytes well under quotagate's server.max_receive_bytes.

By default it prints those snippets, to merge into an existing Envoy
configuration; with --bootstrap it prints a complete bootstrap that runs as
is, with a JSON access log on stdout that carries quotagate's decision id,
decision, reason, tier, action and cost (so a rejection is found by its
decision id), and an OpenTelemetry tracer that sends Envoy's spans to
--otel-collector over OTLP/gRPC (quotagate's own spans join them). Either
passes Envoy's own schema validation. See envoy/README.md.

Examples:
  quotagate envoy-config --config quota.yaml --address quotagate:9191 > ext_authz.yaml
  quotagate envoy-config --bootstrap --upstream-address 127.0.0.1:8000 > envoy.yaml && envoy -c envoy.yaml
`

// runEnvoyConfig runs "quotagate envoy-config": args are what follows the
// command name. loadRoutes turns a quota configuration file into the routes
// to price and the usage headers to log ("" means the embedded default
// configuration); nil means no routes beyond the catch-all.
func runEnvoyConfig(ctx context.Context, args []string, stdout, stderr io.Writer, loadRoutes func(path string) (envoyInputs, error)) error {
	_ = ctx // generation is instantaneous; ctx is kept for symmetry with the other commands
	fs := flag.NewFlagSet("envoy-config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		configPath   = fs.String("config", "", "quota configuration `FILE` whose actions, workflows and routes become Envoy routes (default: the embedded default config)")
		address      = fs.String("address", "127.0.0.1:9191", "quotagate's gRPC `host:port` as Envoy reaches it")
		cluster      = fs.String("cluster", "quotagate", "`name` of the Envoy cluster for quotagate")
		timeout      = fs.Duration("timeout", 250*time.Millisecond, "ext_authz timeout per Check")
		maxBody      = fs.Uint("max-request-bytes", 64<<10, "request body `bytes` buffered and sent to quotagate for word counting (larger bodies are sent truncated)")
		failOpen     = fs.Bool("failure-mode-allow", false, "let requests through when quotagate cannot be reached (default: refuse with 503)")
		healthPath   = fs.String("health-path", "/healthz", "`path` of a route with ext_authz disabled")
		upstream     = fs.String("upstream", "backend", "`name` of the cluster the routes send traffic to")
		bootstrap    = fs.Bool("bootstrap", false, "print a complete bootstrap instead of snippets")
		listenPort   = fs.Int("listen-port", 10000, "listener `port` (with --bootstrap)")
		upstreamAddr = fs.String("upstream-address", "127.0.0.1:8000", "the API backend's `host:port` (with --bootstrap)")
		collector    = fs.String("otel-collector", "127.0.0.1:4317", "OTLP/gRPC collector `host:port` for Envoy's OpenTelemetry tracer, or none to leave the tracer out (with --bootstrap)")
		noSettle     = fs.Bool("no-settlement", false, "leave out the access logger that reports each response to quotagate: no refunds, no actual-usage adjustments, every charge stands")
		settleAddr   = fs.String("settlement-address", "", "quotagate's access log service `host:port` when it has a listener of its own (default: the ext_authz cluster)")
		settleFlush  = fs.Duration("settlement-flush-interval", 250*time.Millisecond, "longest an access-log entry waits in Envoy's buffer, and so how late a refund can be")
		usageHeaders []string
	)
	fs.Func("usage-header", "response `header` in which the upstream reports actual usage, logged for settlement; repeatable; none logs no usage header (default: the usage_header of every action's settle rule in the quota config, else "+envoy.DefaultUsageHeader+")", func(v string) error {
		usageHeaders = append(usageHeaders, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fs, envoyConfigHelp, stdout, nil) // envoy-config reads no environment variables
			return nil
		}
		return exitError{code: 2, err: fmt.Errorf("envoy-config: %w (see quotagate envoy-config --help)", err)}
	}
	if fs.NArg() > 0 {
		return exitError{code: 2, err: fmt.Errorf("envoy-config: unexpected argument %q (the quota config is given with --config)", fs.Arg(0))}
	}
	host, port, err := splitHostPort("--address", *address)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	upHost, upPort, err := splitHostPort("--upstream-address", *upstreamAddr)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	if *maxBody == 0 || *maxBody > 1<<32-1 {
		return exitError{code: 2, err: fmt.Errorf("envoy-config: --max-request-bytes: must be between 1 and 4294967295, got %d", *maxBody)}
	}
	var routes []envoy.Route
	if loadRoutes != nil {
		in, err := loadRoutes(*configPath)
		if err != nil {
			return fmt.Errorf("envoy-config: %w", err)
		}
		routes = in.Routes
		if usageHeaders == nil {
			// The flag wins; without it, log what the settle rules read.
			usageHeaders = in.UsageHeaders
		}
	} else if *configPath != "" {
		return errors.New("envoy-config: --config is not supported by this build (no route loader)")
	}
	opts := envoy.GenerateOptions{
		Cluster: *cluster, Address: host, Port: port, Timeout: *timeout, MaxRequestBytes: uint32(*maxBody),
		FailureModeAllow: *failOpen, Routes: routes, HealthPath: *healthPath, Upstream: *upstream,
		Bootstrap: *bootstrap, ListenPort: *listenPort, UpstreamAddress: upHost, UpstreamPort: upPort,
		Collector: *collector,
		Settlement: envoy.Settlement{
			Off: *noSettle, Address: *settleAddr, FlushInterval: *settleFlush, UsageHeaders: usageHeaders,
		},
	}
	if err := envoy.Generate(stdout, opts); err != nil {
		return exitError{code: 2, err: fmt.Errorf("envoy-config: %w", err)}
	}
	return nil
}

// splitHostPort parses a flag's host:port value.
func splitHostPort(flagName, v string) (string, int, error) {
	host, p, err := net.SplitHostPort(v)
	if err == nil && host == "" {
		err = errors.New("missing host")
	}
	port, perr := strconv.Atoi(p)
	if err == nil && (perr != nil || port < 1 || port > 65535) {
		err = errors.New("port must be a number between 1 and 65535")
	}
	if err != nil {
		return "", 0, fmt.Errorf("envoy-config: %s %q: %w; want host:port, e.g. quotagate:9191", flagName, v, err)
	}
	return host, port, nil
}
