package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
)

const serveHelp = `Usage: quotagate serve [flags]

Runs the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization,
with grpc.health.v1) and an HTTP listener serving /healthz, /readyz and
/metrics. Without --config it serves the embedded default configuration: the
seed's tiers, translate and summarize prices, demo users, and a TRUSTED
x-user-id header (a demo setting; a warning is logged).

Flags win over QUOTAGATE_* variables, which win over the configuration file.
An age-encrypted config is decrypted with the identity in
$QUOTAGATE_AGE_IDENTITY_FILE or the passphrase in $QUOTAGATE_AGE_PASSPHRASE_FILE.
SIGTERM or SIGINT drains: health turns NOT_SERVING, new Checks are refused,
in-flight Checks finish within server.grace_period, and the process exits 0.
Logs are JSON on stderr.
`

// serveFlags are serve's settings after flags and environment.
type serveFlags struct {
	configPath, grpcAddr, httpAddr, authzHTTPAddr, logLevel string
	set                                                     map[string]bool
}

func parseServeFlags(args []string, getenv func(string) string, stdout io.Writer) (serveFlags, error) {
	var f serveFlags
	fs := newFlagSet("serve")
	fs.StringVar(&f.configPath, "config", "", "configuration `file` (YAML or JSON, optionally age-encrypted); empty serves the embedded default")
	fs.StringVar(&f.grpcAddr, "grpc-addr", ":9191", "`address` of the ext_authz gRPC listener; overrides server.grpc_addr")
	fs.StringVar(&f.httpAddr, "http-addr", ":8080", "`address` of the HTTP listener for /healthz, /readyz and /metrics; overrides server.http_addr")
	fs.StringVar(&f.authzHTTPAddr, "authz-http-addr", "", "`address` of the HTTP authorization listener (Envoy http_service, forward-auth); empty disables it")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	set, err := parseFlags(fs, args, getenv, serveHelp, stdout)
	if err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, exitError{code: 2, err: fmt.Errorf("serve: unexpected argument %q (see quotagate serve --help)", fs.Arg(0))}
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return exitError{code: 2, err: fmt.Errorf("serve: --log-level %q: want debug, info, warn or error", f.logLevel)}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	file, source, err := loadConfig(f.configPath, getenv)
	if err != nil {
		return err
	}
	if !f.set["grpc-addr"] {
		f.grpcAddr = file.Server.GRPCAddr
	}
	if !f.set["http-addr"] {
		f.httpAddr = file.Server.HTTPAddr
	}
	a, err := assemble(file, logger)
	if err != nil {
		return err
	}
	l, err := listen(f)
	if err != nil {
		return err
	}
	announce(logger, stdout, file, source, l)
	return a.serve(ctx, l, file.Server.GracePeriod.D(), logger)
}

// loadConfig reads the configuration file, or the embedded default.
func loadConfig(path string, getenv func(string) string) (*config.File, string, error) {
	opts := config.LoadOptions{IdentityFile: getenv(config.EnvIdentityFile), PassphraseFile: getenv(config.EnvPassphraseFile)}
	if path == "" {
		f, err := config.LoadData("embedded default config", config.Default(), opts)
		return f, "embedded default", err
	}
	f, err := config.Load(path, opts)
	return f, path, err
}

// app is the assembled service: the engine, the ext_authz server and the
// gRPC server around it.
type app struct {
	eng   *engine.Engine
	authz *extauthz.Server
	gs    *grpc.Server
	hs    *health.Server
	ready atomic.Bool
	// metricsHandler serves /metrics; nil serves an empty exposition.
	metricsHandler http.Handler
}

// assemble builds the engine and servers from the configuration.
func assemble(file *config.File, logger *slog.Logger) (*app, error) {
	ecfg, err := file.Engine()
	if err != nil {
		return nil, err
	}
	if kind := file.Store.Kind; kind != "" && kind != "memory" {
		return nil, fmt.Errorf("serve: store.kind %q is not available in this build; use memory", kind)
	}
	if ecfg.FlushInterval == 0 {
		ecfg.FlushInterval = file.Store.FlushInterval.D()
	}
	ecfg.SyncWrites = ecfg.SyncWrites || file.Store.Durability == "sync"
	eng, err := engine.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	opts, err := authzOptions(file, eng, logger)
	if err != nil {
		return nil, err
	}
	authz, err := extauthz.NewServer(eng, opts)
	if err != nil {
		return nil, err
	}
	srv := file.Server
	gs, hs, err := authz.NewGRPCServer(extauthz.GRPCOptions{
		CertFile: srv.TLS.CertFile, KeyFile: srv.TLS.KeyFile, ClientCAFile: srv.TLS.ClientCAFile,
		MaxConcurrentStreams: srv.MaxConcurrentStreams,
		KeepaliveTime:        srv.Keepalive.Time.D(), KeepaliveTimeout: srv.Keepalive.Timeout.D(),
		KeepaliveMinTime: srv.Keepalive.MinTime.D(),
		Reflection:       srv.Reflection,
	})
	if err != nil {
		return nil, err
	}
	return &app{eng: eng, authz: authz, gs: gs, hs: hs}, nil
}

// authzOptions maps the configuration onto extauthz.Options.
func authzOptions(file *config.File, eng *engine.Engine, logger *slog.Logger) (extauthz.Options, error) {
	id := file.Identity
	sources := make([]extauthz.Source, 0, len(id.Sources))
	for _, s := range id.Sources {
		src, err := extauthz.ParseSource(s)
		if err != nil {
			return extauthz.Options{}, err
		}
		sources = append(sources, src)
	}
	routes := make([]extauthz.Route, len(file.Routes))
	for i, r := range file.Routes {
		routes[i] = extauthz.Route{PathPrefix: r.PathPrefix, Method: r.Method, Action: r.Action, Workflow: r.Workflow}
	}
	upgrade := make(map[engine.Tier]string, len(file.QuotaManager.Tiers))
	for name, t := range file.QuotaManager.Tiers {
		upgrade[engine.Tier(name)] = t.UpgradeURL
	}
	return extauthz.Options{
		Identity: extauthz.IdentityOptions{
			Sources:   sources,
			JWTFilter: id.JWT.Filter, JWTPayloadKey: id.JWT.PayloadKey,
			SubjectClaim: id.JWT.SubjectClaim, TierClaim: id.JWT.TierClaim, RolesClaim: id.JWT.RolesClaim, TeamClaim: id.JWT.TeamClaim,
			Header: id.Header.Name, HeaderTrusted: id.Header.Trusted,
			APIKeyHeader: id.APIKey.Header, APIKeys: file.APIKeys(),
		},
		Routes:                    routes,
		StripHeaders:              id.StripHeaders,
		InsufficientBalanceStatus: file.Server.InsufficientBalanceStatus,
		WordsPerByte:              file.Pricing.PartialBodyWordsPerByte,
		UpgradeURL:                func(t engine.Tier) string { return upgrade[t] },
		Logger:                    logger,
	}, nil
}

// listeners are the bound sockets; binding happens before anything starts
// so that a port in use is one clear error.
type listeners struct {
	grpc, http, authzHTTP net.Listener
}

func listen(f serveFlags) (listeners, error) {
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
	return l, nil
}

// announce logs where quotagate listens, warns about a trusted identity
// header, and prints a ready-to-paste check command.
func announce(logger *slog.Logger, stdout io.Writer, file *config.File, source string, l listeners) {
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
	logger.Info("quotagate listening", attrs...)
	fmt.Fprintf(stdout, "quotagate %s: ext_authz gRPC on %s, health and metrics on http://%s\n",
		versionString(), l.grpc.Addr(), l.http.Addr())
	if l.authzHTTP != nil {
		fmt.Fprintf(stdout, "HTTP authorization (forward-auth) on http://%s\n", l.authzHTTP.Addr())
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
	if _, ok := file.QuotaManager.Users[user]; !ok {
		for name := range file.QuotaManager.Users {
			user = name
			break
		}
	}
	cmd := "quotagate check --addr " + target + " --user " + user
	if _, ok := file.QuotaManager.Actions["translate"]; ok {
		cmd += " --path /v1/translate --action translate --body 'Hello, world. How are you today?'"
	}
	if !strings.Contains(cmd, "--path") {
		cmd += " --path /"
	}
	return cmd
}

// serve runs the servers and the engine's flush loop until ctx is done,
// then drains: readiness and health turn NOT_SERVING, in-flight Checks
// finish within grace, and the engine flushes last.
func (a *app) serve(ctx context.Context, l listeners, grace time.Duration, logger *slog.Logger) error {
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	hsrv := &http.Server{Handler: a.httpMux(), ReadHeaderTimeout: 10 * time.Second}
	var asrv *http.Server
	if l.authzHTTP != nil {
		asrv = &http.Server{Handler: a.authz.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	a.ready.Store(true)
	g, gctx := errgroup.WithContext(ctx)
	engDone := make(chan error, 1)
	go func() { engDone <- a.eng.Run(engCtx) }()
	g.Go(func() error {
		if err := a.gs.Serve(l.grpc); err != nil {
			return fmt.Errorf("serve: gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveHTTP(hsrv, l.http) })
	if asrv != nil {
		g.Go(func() error { return serveHTTP(asrv, l.authzHTTP) })
	}
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("draining", "grace_period", grace.String())
		a.ready.Store(false)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		if asrv != nil {
			go asrv.Shutdown(shutdownCtx)
		}
		if extauthz.Drain(a.gs, a.hs, grace) {
			logger.Warn("grace period ran out; in-flight Checks were cancelled", "grace_period", grace.String())
		}
		return hsrv.Shutdown(shutdownCtx)
	})
	err := g.Wait()
	stopEngine()
	if ferr := <-engDone; ferr != nil && err == nil {
		err = fmt.Errorf("serve: final flush: %w", ferr)
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

func serveHTTP(srv *http.Server, l net.Listener) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: HTTP on %s: %w", l.Addr(), err)
	}
	return nil
}
