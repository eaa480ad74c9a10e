package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"golang.org/x/sync/errgroup"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/telemetry"
)

const serveHelp = `Usage: quotagate serve [flags]

Runs the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization,
with grpc.health.v1) and an HTTP listener serving /healthz, /readyz, /status
and /metrics. Without --config it serves the embedded default configuration:
three tiers (freemium 10 calls an hour, standard 100, enterprise 500),
translate and summarize prices, demo users, and a TRUSTED x-user-id
header (a demo setting; a warning is logged), listening on 127.0.0.1:9191
and 127.0.0.1:8080 only. A configuration that trusts an identity header
and listens beyond loopback gets a WARNING at startup.

Flags win over QUOTAGATE_* variables, which win over the configuration file.
An age-encrypted config is decrypted with the identity in
$QUOTAGATE_AGE_IDENTITY_FILE or the passphrase in $QUOTAGATE_AGE_PASSPHRASE_FILE.

With --data-dir, usage, balances and alert state survive restarts and every
decision goes to the ledger, both in one SQLite file, DIR/ledger.db (the
directory is created if missing). --durability sync commits each charge with
its ledger record before answering. Without --data-dir, state is in memory
and nothing is ledgered unless --ledger is set.

The configuration file is reloaded when it changes and on SIGHUP. A file
that does not load changes nothing: the error is logged, counted in the
quota_config_reloads_total metric and shown on /status and /readyz.
SIGTERM or SIGINT drains: health turns NOT_SERVING, new Checks are refused,
in-flight Checks finish within server.grace_period, then the engine and the
ledger flush, and the process exits 0. Logs are JSON on stderr, with the
trace_id and span_id of the request. Traces and metrics are exported over
OTLP when the standard OTEL_* variables name an endpoint; the startup log
names each exporter's endpoint and protocol, warns when they disagree (4317
is OTLP/gRPC, 4318 OTLP/HTTP), and export errors are logged as JSON, at most
one line every 10 s. /metrics also serves the Go runtime (go_*), process
(process_*) and gRPC server (grpc_server_*) metrics.
`

// serveFlags are serve's settings after flags and environment.
type serveFlags struct {
	configPath, grpcAddr, httpAddr, authzHTTPAddr, logLevel string
	dataDir, durability, ledgerDSN, adminAddr               string
	traceStdout                                             bool
	gcHeapFloorMiB                                          int
	set                                                     map[string]bool
}

func parseServeFlags(args []string, getenv func(string) string, stdout io.Writer) (serveFlags, error) {
	var f serveFlags
	fs := newFlagSet("serve")
	fs.StringVar(&f.configPath, "config", "", "configuration `file` (YAML or JSON, optionally age-encrypted), reloaded on change and SIGHUP; empty serves the embedded default")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "", "`address` of the ext_authz gRPC listener; overrides server.grpc_addr (127.0.0.1:9191 in the embedded default, :9191 in a file that sets none)")
	fs.StringVar(&f.httpAddr, "http-addr", "", "`address` of the HTTP listener for /healthz, /readyz, /status and /metrics; overrides server.http_addr (127.0.0.1:8080 in the embedded default, :8080 in a file that sets none)")
	fs.StringVar(&f.authzHTTPAddr, "authz-http-addr", "", "`address` of the HTTP authorization listener (Envoy http_service, forward-auth); empty disables it")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "`address` of the management API and dashboard; overrides admin.addr; empty (and no admin.addr) disables it")
	fs.StringVar(&f.dataDir, "data-dir", "", "`directory` for durable state and the ledger (DIR/ledger.db), created if missing; empty keeps state in memory")
	fs.StringVar(&f.durability, "durability", "", "durability `mode`: batch (state saved every store.flush_interval) or sync (each charge and its ledger record committed before the answer); overrides store.durability")
	fs.StringVar(&f.ledgerDSN, "ledger", "", "ledger `DSN`: a SQLite file or a postgres:// URL; overrides ledger.dsn (default DIR/ledger.db with --data-dir)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.BoolVar(&f.traceStdout, "trace-stdout", false, "also print every sampled span on stdout, for debugging (OTLP export is configured by the standard OTEL_* variables)")
	fs.IntVar(&f.gcHeapFloorMiB, "gc-heap-floor", defaultGCHeapFloorMiB, "`MiB` of untouched memory held as live heap, so that the garbage collector runs less often when the cached state is small (it costs no resident memory itself; garbage waits longer between collections); 0 disables it")
	set, err := parseFlags(fs, args, getenv, serveHelp, stdout)
	if err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, exitError{code: 2, err: fmt.Errorf("serve: unexpected argument %q (see quotagate serve --help)", fs.Arg(0))}
	}
	if f.gcHeapFloorMiB < 0 {
		return f, exitError{code: 2, err: fmt.Errorf("serve: --gc-heap-floor: must be >= 0 MiB, got %d", f.gcHeapFloorMiB)}
	}
	f.set = set
	return f, nil
}

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f, err := parseServeFlags(args, getenv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	floor := heapFloor(f.gcHeapFloorMiB)
	defer runtime.KeepAlive(floor)
	defer pollDuringSweeps()()
	level, err := telemetry.ParseLevel(f.logLevel)
	if err != nil {
		return exitError{code: 2, err: fmt.Errorf("serve: --log-level: %w", err)}
	}
	logger := telemetry.NewLogger(stderr, level)
	// Libraries that write through the standard log package (net/http's
	// transport, for one) then write JSON lines too.
	slog.SetDefault(logger)
	file, source, err := loadConfig(f.configPath, getenv)
	if err != nil {
		return err
	}
	topts := telemetryOptions(file)
	topts.ServiceName, topts.Version, topts.TraceStdout, topts.Stdout, topts.Getenv = "quotagate", versionString(), f.traceStdout, stdout, getenv
	prov, err := telemetry.Setup(ctx, topts)
	if err != nil {
		return err
	}
	// The SDK's own errors (a collector that does not answer, or answers
	// in the other OTLP protocol) go to the JSON log, at most one line
	// every 10 s, instead of plain text on stderr.
	otel.SetErrorHandler(prov.ErrorHandler(logger, 10*time.Second, nil))
	logExporters(logger, prov)
	defer func() {
		// Flush spans and metrics after the servers drained; ctx is done by now.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := prov.Shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "error", err)
		}
	}()
	if !f.set["grpc-addr"] {
		f.grpcAddr = file.Server.GRPCAddr
	}
	if !f.set["http-addr"] {
		f.httpAddr = file.Server.HTTPAddr
	}
	a, err := assemble(ctx, file, assembleOptions{Logger: logger, Providers: prov, Getenv: getenv,
		DataDir: f.dataDir, Durability: f.durability, LedgerDSN: f.ledgerDSN, AdminAddr: f.adminAddr,
		ConfigPath: f.configPath, ConfigSource: source})
	if err != nil {
		return err
	}
	defer a.close()
	l, err := listen(f, a.adminAddr, file.Server.AccessLog)
	if err != nil {
		return err
	}
	if w := exposureWarning(file, f.grpcAddr, f.authzHTTPAddr); w != "" {
		// Loud on purpose: anyone who reaches these listeners can claim any identity.
		logger.Warn("EXPOSED: "+w, "config", source)
		fmt.Fprintf(stdout, "WARNING: %s\n", w)
	}
	announce(logger, stdout, file, source, l, a)
	return a.serve(ctx, l, file.Server.GracePeriod.D(), logger)
}

// logExporters names each OTLP exporter's endpoint and protocol, and
// warns when a port and a protocol disagree.
func logExporters(logger *slog.Logger, prov *telemetry.Providers) {
	for _, t := range prov.Exporters() {
		logger.Info("opentelemetry exporter", t.LogAttrs()...)
		if t.Warning != "" {
			logger.Warn(t.Warning, t.LogAttrs()...)
		}
	}
}

// loadConfig reads the configuration file, or the embedded default. A
// file that cannot be read (missing, not permitted), whether the
// configuration or a key file named by the environment, is bad usage
// (exit 2); a file that does not validate is a failure (exit 1).
func loadConfig(path string, getenv func(string) string) (*config.File, string, error) {
	opts := loadOptions(getenv)
	if path == "" {
		f, err := config.LoadData("embedded default config", config.Default(), opts)
		return f, "embedded default", unreadableIsUsage(err)
	}
	f, err := config.Load(path, opts)
	return f, path, unreadableIsUsage(err)
}

// unreadableIsUsage makes an error about a file named on the command line
// or in the environment that cannot be read a bad-usage error (exit 2),
// as the README's CLI reference says; other errors are returned as they
// are.
func unreadableIsUsage(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) {
		return exitError{code: 2, err: err}
	}
	return err
}

// listeners are the bound sockets; binding happens before anything starts
// so that a port in use is one clear error.
type listeners struct {
	grpc, http, authzHTTP, admin net.Listener
	// accessLog is server.access_log.addr's; nil when it shares grpc.
	accessLog net.Listener
}

func (l listeners) close() {
	for _, ln := range []net.Listener{l.grpc, l.http, l.authzHTTP, l.admin, l.accessLog} {
		if ln != nil {
			ln.Close()
		}
	}
}

func listen(f serveFlags, adminAddr string, al config.AccessLog) (listeners, error) {
	var l listeners
	var err error
	if l.grpc, err = net.Listen("tcp", f.grpcAddr); err != nil {
		return l, fmt.Errorf("serve: gRPC listener on %s: %w (free the port or choose another with --grpc-addr)", f.grpcAddr, err)
	}
	if l.http, err = net.Listen("tcp", f.httpAddr); err != nil {
		l.grpc.Close()
		return l, fmt.Errorf("serve: HTTP listener on %s: %w (free the port or choose another with --http-addr)", f.httpAddr, err)
	}
	if f.authzHTTPAddr != "" {
		if l.authzHTTP, err = net.Listen("tcp", f.authzHTTPAddr); err != nil {
			l.grpc.Close()
			l.http.Close()
			return l, fmt.Errorf("serve: HTTP authorization listener on %s: %w (free the port or choose another with --authz-http-addr)", f.authzHTTPAddr, err)
		}
	}
	if adminAddr != "" {
		if l.admin, err = net.Listen("tcp", adminAddr); err != nil {
			l.close()
			return l, fmt.Errorf("serve: admin listener on %s: %w (free the port or choose another with --admin-addr)", adminAddr, err)
		}
	}
	if al.Enabled && al.Addr != "" {
		if l.accessLog, err = net.Listen("tcp", al.Addr); err != nil {
			l.close()
			return l, fmt.Errorf("serve: access log listener on %s: %w (free the port or choose another with server.access_log.addr)", al.Addr, err)
		}
	}
	return l, nil
}

// announce logs where quotagate listens, warns about a trusted identity
// header, and prints a ready-to-paste check command.
func announce(logger *slog.Logger, stdout io.Writer, file *config.File, source string, l listeners, a *app) {
	id := file.Identity
	if id.Header.Trusted {
		for _, s := range id.Sources {
			if s == config.SourceHeader {
				logger.Warn("identity.header.trusted is true: the "+id.Header.Name+" header is believed as sent; "+
					"only use this behind a proxy that sets it after authenticating the caller",
					"header", id.Header.Name, "config", source)
			}
		}
	}
	attrs := []any{"grpc", l.grpc.Addr().String(), "http", l.http.Addr().String(), "config", source, "version", versionString()}
	if l.authzHTTP != nil {
		attrs = append(attrs, "authz_http", l.authzHTTP.Addr().String())
	}
	if l.admin != nil {
		attrs = append(attrs, "admin", l.admin.Addr().String())
	}
	if l.accessLog != nil {
		attrs = append(attrs, "access_log", l.accessLog.Addr().String())
	}
	attrs = append(attrs, "store", a.backends.Desc, "durability", map[bool]string{false: "batch", true: "sync"}[a.backends.Sync])
	if a.backends.Ledger != nil {
		attrs = append(attrs, "ledger", a.backends.Ledger.Backend())
	}
	logger.Info("quotagate listening", attrs...)
	fmt.Fprintf(stdout, "quotagate %s: ext_authz gRPC on %s, health and metrics on http://%s\n",
		versionString(), l.grpc.Addr(), l.http.Addr())
	if l.authzHTTP != nil {
		fmt.Fprintf(stdout, "HTTP authorization (forward-auth) on http://%s\n", l.authzHTTP.Addr())
	}
	if l.admin != nil {
		fmt.Fprintf(stdout, "admin API and dashboard on %s\n", l.admin.Addr())
	}
	fmt.Fprintf(stdout, "try: %s\n", exampleCheck(file, l.grpc.Addr()))
}

// exampleCheck is a quotagate check command that works against this server.
func exampleCheck(file *config.File, addr net.Addr) string {
	target := addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		target = net.JoinHostPort("localhost", fmt.Sprint(tcp.Port))
	}
	user := "demo-free"
	if _, ok := file.QuotaManager.Users[user]; !ok && len(file.QuotaManager.Users) > 0 {
		// The same user every start: the first configured one by name.
		user = slices.Sorted(maps.Keys(file.QuotaManager.Users))[0]
	}
	// The program as it was started (bin/quotagate under make run), so
	// that the line pastes as is from the same directory.
	prog := "quotagate"
	if len(os.Args) > 0 && os.Args[0] != "" {
		prog = os.Args[0]
	}
	cmd := prog + " check --addr " + target + " --user " + user
	if _, ok := file.QuotaManager.Actions["translate"]; ok {
		cmd += " --path /v1/translate --action translate --body 'Hello, world. How are you today?'"
	}
	if !strings.Contains(cmd, "--path") {
		cmd += " --path /"
	}
	return cmd
}

// serve runs the servers, the engine's flush loop, the ledger writer, the
// notifier and the configuration watcher until ctx is done, then drains:
// readiness and health turn NOT_SERVING, in-flight Checks finish within
// grace, then the engine flushes, the ledger writer flushes, and the store
// and ledger close.
func (a *app) serve(ctx context.Context, l listeners, grace time.Duration, logger *slog.Logger) error {
	bg := a.startBackground(ctx)
	defer bg.cancel()
	hsrv := &http.Server{Handler: a.httpMux(), ReadHeaderTimeout: 10 * time.Second}
	var asrv *http.Server
	if l.authzHTTP != nil {
		h := a.authz.HTTPHandler()
		asrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	}
	a.ready.Store(true)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.gs.Serve(l.grpc); err != nil {
			return fmt.Errorf("serve: gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveHTTP(hsrv, l.http) })
	als := a.accessLog
	if als != nil && als.gs != nil && l.accessLog != nil {
		g.Go(func() error {
			if err := als.gs.Serve(l.accessLog); err != nil {
				return fmt.Errorf("serve: access log gRPC: %w", err)
			}
			return nil
		})
	}
	if asrv != nil {
		g.Go(func() error { return serveHTTP(asrv, l.authzHTTP) })
	}
	if l.admin != nil {
		g.Go(func() error { return a.admin.Serve(gctx, l.admin) })
	}
	g.Go(func() error { return a.watchConfig(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("draining", "grace_period", grace.String())
		a.ready.Store(false)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		if asrv != nil {
			go asrv.Shutdown(shutdownCtx)
		}
		if als != nil {
			// Access log streams last as long as Envoy does: end them, so
			// that the drain waits for Checks only.
			als.als.Shutdown()
			if als.gs != nil {
				go extauthz.Drain(als.gs, als.hs, grace)
			}
		}
		if extauthz.Drain(a.gs, a.hs, grace) {
			logger.Warn("grace period ran out; in-flight Checks were cancelled", "grace_period", grace.String())
		}
		return hsrv.Shutdown(shutdownCtx)
	})
	err := a.stop(g.Wait(), grace, bg)
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// background are the loops that run beside the servers and stop after
// them: the engine's flushes, the ledger writer and the notifier.
type background struct {
	cancel                             context.CancelFunc
	stopEngine, stopWriter, stopNotify context.CancelFunc
	engineDone, writerDone, notifyDone <-chan error
}

func (a *app) startBackground(ctx context.Context) *background {
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// The engine's flushes and the ledger's blocks pause together, so
	// that Checks get the processor between their slices (engine.Pacer).
	base = engine.WithPacer(base, &engine.Pacer{})
	bg := &background{cancel: cancel}
	var engCtx, writerCtx, notifyCtx context.Context
	engCtx, bg.stopEngine = context.WithCancel(base)
	writerCtx, bg.stopWriter = context.WithCancel(base)
	notifyCtx, bg.stopNotify = context.WithCancel(base)
	bg.engineDone = goDone(func() error {
		if a.backends.Store == nil {
			// State lives in memory only: a flush would copy every dirty
			// subject into the memory store for nothing (evictions hand
			// theirs over), costing CPU and a second copy of the state.
			<-engCtx.Done()
			return nil
		}
		return a.eng.Run(engCtx)
	})
	bg.writerDone = goDone(func() error {
		if a.backends.Writer == nil {
			return nil
		}
		return a.backends.Writer.Run(writerCtx)
	})
	bg.notifyDone = goDone(func() error { return a.notifier.Run(notifyCtx) })
	return bg
}

// stop runs the shutdown after the servers drained: the engine's final
// flush, then the ledger writer's, then the notifier delivers what is
// queued (within grace), then the store and the ledger close.
func (a *app) stop(err error, grace time.Duration, bg *background) error {
	bg.stopEngine()
	if ferr := <-bg.engineDone; ferr != nil && err == nil {
		err = fmt.Errorf("serve: final flush: %w", ferr)
	}
	bg.stopWriter()
	if werr := <-bg.writerDone; werr != nil && err == nil {
		err = fmt.Errorf("serve: ledger final flush: %w", werr)
	}
	a.notifier.Close()
	select {
	case <-bg.notifyDone:
	case <-time.After(grace):
		a.logger.Warn("alerts still queued at shutdown were dropped", "grace_period", grace.String())
	}
	bg.stopNotify()
	a.close()
	return err
}

// goDone runs fn in a goroutine and returns a channel that receives its
// result.
func goDone(fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return done
}

func serveHTTP(srv *http.Server, l net.Listener) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: HTTP on %s: %w", l.Addr(), err)
	}
	return nil
}
