package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/notify"
	"github.com/quotagate/quotagate/store/durable"
	"github.com/quotagate/quotagate/telemetry"
)

// app is the assembled service: the engine, the ext_authz server and the
// gRPC server around it, the durable backends, alerts, the admin API and
// the configuration watcher.
type app struct {
	eng   *engine.Engine
	authz *extauthz.Server
	gs    *grpc.Server
	hs    *health.Server
	// accessLog settles charges from Envoy's access log; nil when off.
	accessLog *accessLog
	ready     atomic.Bool
	// metricsHandler serves /metrics; nil serves an empty exposition.
	metricsHandler http.Handler
	// rec records each decision's span, metrics and rejection log.
	rec *telemetry.Recorder
	obs *observer
	// backends are the durable parts behind the engine: store and ledger.
	backends *durable.Backends
	// notifier raises and delivers alerts; admin is nil when the admin API
	// is off, adminAddr its resolved address.
	notifier  *notify.Notifier
	admin     *admin.Server
	adminAddr string
	// watcher reloads the configuration file; nil for the embedded default.
	watcher      *config.Watcher
	file         atomic.Pointer[config.File]
	configPath   string
	configSource string
	logger       *slog.Logger
	closed       atomic.Bool
}

// assembleOptions are what assemble needs besides the configuration. The
// zero value (but for Logger and Providers) is an in-memory engine with no
// ledger, alerts as configured and no admin API.
type assembleOptions struct {
	Logger    *slog.Logger
	Providers *telemetry.Providers
	// Getenv resolves secrets named by the configuration (webhook.secret_env).
	Getenv func(string) string
	// DataDir, Durability, LedgerDSN and AdminAddr are the serve flags of
	// those names; empty means the configuration's.
	DataDir, Durability, LedgerDSN, AdminAddr string
	// ConfigPath is the file to watch; empty means none.
	ConfigPath, ConfigSource string
}

// assemble builds the engine, its backends and the servers from the
// configuration. On error, what was opened is closed.
func assemble(ctx context.Context, file *config.File, o assembleOptions) (_ *app, err error) {
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	rules, err := engineRules(file)
	if err != nil {
		return nil, err
	}
	b, err := openBackends(ctx, file, o)
	if err != nil {
		return nil, err
	}
	a := &app{backends: b, logger: o.Logger, configPath: o.ConfigPath, configSource: o.ConfigSource}
	a.file.Store(file)
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if a.notifier, err = newNotifier(file, o); err != nil {
		return nil, err
	}
	eopts := engineOptions(file, b, a.notifier, o.Logger)
	// The recorder comes first so that the store can be timed; its
	// callbacks only run at scrape time, after a.eng is set.
	a.rec, err = telemetry.NewRecorder(o.Providers, telemetry.RecorderOptions{
		RawSubject: file.Tracing.RawSubject, Logger: o.Logger,
		EngineStats:  func() telemetry.EngineStats { return engineStats(a.eng) },
		TierStats:    func() []telemetry.TierStat { return tierStats(a.eng) },
		PendingStats: func() telemetry.PendingStats { return pendingStats(a.eng) },
	})
	if err != nil {
		return nil, err
	}
	eopts.StoreObserver = a.rec.RecordStoreOp
	if a.eng, err = engine.New(rules, eopts); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	// Decisions made before a restart are settled after it, exactly once.
	n, err := a.eng.RestorePending(ctx)
	if err != nil {
		return nil, fmt.Errorf("serve: restore the decisions pending settlement: %w", err)
	}
	if n > 0 {
		o.Logger.Info("restored decisions pending settlement", "count", n)
	}
	if err := a.assembleServers(file, o); err != nil {
		return nil, err
	}
	if o.ConfigPath != "" {
		// require_encryption stays in force across reloads until a restart.
		lo := loadOptions(o.Getenv)
		lo.RequireEncryption = file.RequireEncryption
		a.watcher = config.NewWatcher(o.ConfigPath, lo, a.apply, o.Logger)
	}
	if err := a.registerMetrics(o.Providers); err != nil {
		return nil, fmt.Errorf("serve: metrics: %w", err)
	}
	a.metricsHandler = o.Providers.MetricsHandler()
	return a, nil
}

// assembleServers builds the ext_authz server, its gRPC server and the
// admin server around the engine.
func (a *app) assembleServers(file *config.File, o assembleOptions) error {
	pol, err := authzPolicy(file)
	if err != nil {
		return err
	}
	a.obs = &observer{rec: a.rec, notifier: a.notifier, writer: a.backends.Writer, commit: a.backends.Committer, sync: a.backends.Sync, now: time.Now}
	if a.admin, err = newAdmin(file, o, a); err != nil {
		return err
	}
	if a.admin != nil {
		a.obs.admin = a.admin
		a.adminAddr = file.Admin.Addr
		if o.AdminAddr != "" {
			a.adminAddr = o.AdminAddr
		}
	}
	if a.authz, err = extauthz.NewServer(a.eng, authzOptions(o.Logger, a.obs), pol); err != nil {
		return err
	}
	srv := file.Server
	var sopts []grpc.ServerOption
	if o.Providers != nil {
		gm, err := o.Providers.NewGRPCMetrics()
		if err != nil {
			return fmt.Errorf("serve: gRPC metrics: %w", err)
		}
		sopts = append(sopts, grpc.ChainUnaryInterceptor(gm.UnaryInterceptor), grpc.ChainStreamInterceptor(gm.StreamInterceptor))
	}
	gopts := extauthz.GRPCOptions{
		ServerOptions: sopts,
		CertFile:      srv.TLS.CertFile, KeyFile: srv.TLS.KeyFile, ClientCAFile: srv.TLS.ClientCAFile,
		MaxConcurrentStreams: srv.MaxConcurrentStreams,
		KeepaliveTime:        srv.Keepalive.Time.D(), KeepaliveTimeout: srv.Keepalive.Timeout.D(),
		KeepaliveMinTime: srv.Keepalive.MinTime.D(),
		Reflection:       srv.Reflection,
		MaxReceiveBytes:  int(srv.MaxReceiveBytes),
		OnUndecided:      func(ctx context.Context, reason string, _ error) { a.rec.RecordUndecided(ctx, reason) },
		Logger:           o.Logger,
	}
	if a.gs, a.hs, err = a.authz.NewGRPCServer(gopts); err != nil {
		return err
	}
	a.accessLog, err = a.assembleAccessLog(srv.AccessLog, gopts)
	return err
}

// close releases what assemble opened: the recorder, the notifier, the
// store and the ledger. serve calls it in the shutdown order; it is
// idempotent.
func (a *app) close() {
	if a.closed.Swap(true) {
		return
	}
	if a.rec != nil {
		a.rec.Close()
	}
	if a.notifier != nil {
		a.notifier.Close()
	}
	a.backends.Close(context.Background(), a.logger)
}
