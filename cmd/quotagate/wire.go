package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/extauthz/pathnorm"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/notify"
	"github.com/quotagate/quotagate/store/durable"
	"github.com/quotagate/quotagate/store/redis"
	"github.com/quotagate/quotagate/telemetry"
)

// This file is where a loaded config.File becomes each component's
// options: the package config owns the file (its schema, defaults and
// references between blocks) and the components own their options and
// their validation. Every path a component reports is relative to its
// options; the functions here place it in the file.

// loadOptions are the options of every configuration load, at start-up,
// on reload and in `config validate` and `config encrypt`: the age key
// files from the environment, and the components' checks, so that a file
// is refused, with every problem and its path, before anything is built
// from it.
func loadOptions(getenv func(string) string) config.LoadOptions {
	return config.LoadOptions{
		IdentityFile:   getenv(config.EnvIdentityFile),
		PassphraseFile: getenv(config.EnvPassphraseFile),
		Check:          checkComponents,
	}
}

// checkComponents builds every component's options from f and validates
// them, returning their problems as *engine.FieldErrors with paths in the
// file (admin.tokens[0].sha256). It is config.LoadOptions.Check: it runs
// even when f has problems of its own, and assumes nothing of f.
func checkComponents(f *config.File) error {
	var errs []error
	acfg, err := adminConfig(f)
	errs = append(errs, inFile("admin", err, nil)...)
	errs = append(errs, inFile("admin", acfg.Validate(), under(engine.FieldErrors(err)))...)
	ncfg, err := notifyConfig(f)
	errs = append(errs, inFile("quota_manager.alerts", err, nil)...)
	errs = append(errs, inFile("quota_manager.alerts", ncfg.Validate(), func(path string) bool {
		// The file's own validation reports these in its words.
		return path == "threshold_percentage" || strings.HasPrefix(path, "channels") ||
			under(engine.FieldErrors(err))(path)
	})...)
	errs = append(errs, checkRoutes(f)...)
	return errors.Join(errs...)
}

// inFile returns the FieldErrors in err with base prefixed to their paths,
// leaving out those whose relative path skip reports (nil skips none).
func inFile(base string, err error, skip func(path string) bool) []error {
	var out []error
	for _, fe := range engine.FieldErrors(err) {
		if skip == nil || !skip(fe.Path) {
			out = append(out, &engine.FieldError{Path: engine.PrefixPath(base, fe.Path), Problem: fe.Problem})
		}
	}
	return out
}

// under returns a skip function for inFile: it reports the paths that
// contain, or lie inside, a value that did not convert, whose problem is
// already reported (a token whose only scope is unknown also has no
// scope, which is the same mistake).
func under(bad []*engine.FieldError) func(path string) bool {
	return func(path string) bool {
		for _, b := range bad {
			if within(path, b.Path) || within(b.Path, path) {
				return true
			}
		}
		return false
	}
}

// within reports whether path is base or a field or element inside it.
func within(path, base string) bool {
	rest, ok := strings.CutPrefix(path, base)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// engineRules converts the quota_manager block to the engine's rules, the
// part of its configuration that a reload swaps.
func engineRules(f *config.File) (engine.Rules, error) { return f.Engine() }

// engineOptions is the engine's fixed wiring: the cache block, the flush
// interval the store block sets, and the back ends (durable.Backends) and
// the services it reports to. A reload never changes them.
func engineOptions(f *config.File, b *durable.Backends, events engine.Events, logger *slog.Logger) engine.Options {
	o := engine.Options{
		Shards: f.QuotaManager.Cache.Shards, CacheSize: f.QuotaManager.Cache.Subjects,
		FlushInterval: f.Store.FlushInterval.D(), SyncWrites: b.Sync,
		Events: events, Logger: logger, Authority: b.Authority, Store: b.Store,
		// The decisions held for settlement (server.access_log).
		PendingSize: f.Server.AccessLog.PendingSize, PendingMaxAge: f.Server.AccessLog.PendingMaxAge.D(),
	}
	if b.Committer != nil {
		// Charge hands each decision's state to the committer, and the
		// Observe hook commits it with the decision's ledger record.
		o.Deferrer = b.Committer
	}
	return o
}

// backendOptions turns the store and ledger blocks and the serve flags
// into store/durable's options: a flag wins over the file.
func backendOptions(f *config.File, o assembleOptions, sync bool) durable.Options {
	opts := durable.Options{
		DataDir: o.DataDir, Kind: f.Store.Kind, StatePath: f.Store.Path,
		LedgerDSN: f.Ledger.DSN, Sync: sync,
		Redis:  redisOptions(f.Store.Redis),
		Writer: ledgerWriterOptions(f, o.Logger),
	}
	if o.LedgerDSN != "" {
		opts.LedgerDSN = o.LedgerDSN
	}
	return opts
}

// adminConfig converts the admin block to the admin server's options. Its
// error holds a FieldError, with a path relative to the block, for each
// scope that is not read, write or admin; that scope is left out.
func adminConfig(f *config.File) (admin.Config, error) {
	a := f.Admin
	cfg := admin.Config{
		Addr:                            a.Addr,
		TLS:                             admin.TLSConfig{CertFile: a.TLS.CertFile, KeyFile: a.TLS.KeyFile, ClientCAFile: a.TLS.ClientCAFile},
		TraceURL:                        a.TraceURL,
		AuthFailuresPerMinute:           a.AuthFailuresPerMinute,
		AuthFailuresPerAddressPerMinute: a.AuthFailuresPerAddressPerMinute,
	}
	var errs []error
	for i, t := range a.Tokens {
		tc := admin.TokenConfig{Name: t.Name, SHA256: t.SHA256, Team: t.Team}
		for j, s := range t.Scopes {
			scope, err := admin.ParseScope(s)
			if err != nil {
				errs = append(errs, &engine.FieldError{Path: fmt.Sprintf("tokens[%d].scopes[%d]", i, j), Problem: err.Error()})
				continue
			}
			tc.Scopes = append(tc.Scopes, scope)
		}
		cfg.Tokens = append(cfg.Tokens, tc)
	}
	return cfg, errors.Join(errs...)
}

// notifyConfig converts the alerts block to the notifier's options.
// Channels the file's validation refuses are left out. Its error holds a
// FieldError, with a path relative to the block, for a starttls mode that
// is neither required nor disabled.
func notifyConfig(f *config.File) (notify.Config, error) {
	a := f.QuotaManager.Alerts
	channels := make([]notify.Channel, 0, len(a.Channels))
	for _, name := range a.Channels {
		if c, err := notify.ParseChannel(name); err == nil {
			channels = append(channels, c)
		}
	}
	var errs []error
	tlsMode, err := notify.ParseTLSMode(a.Email.StartTLS)
	if err != nil {
		errs = append(errs, &engine.FieldError{Path: "email.starttls", Problem: err.Error()})
	}
	w, e, an, m := a.Webhook, a.Email, a.Anomaly, a.Messages
	return notify.Config{
		Enabled: a.Enabled, ThresholdPercentage: a.ThresholdPercentage, Channels: channels,
		QueueSize: a.QueueSize, DedupSize: a.DedupSize,
		Webhook: notify.WebhookConfig{
			URL: w.URL, Secret: string(w.Secret), SecretEnv: w.SecretEnv, MaxRetries: w.MaxRetries,
			Timeout: w.Timeout.D(), Backoff: w.Backoff.D(), MaxBackoff: w.MaxBackoff.D(),
		},
		Email: notify.EmailConfig{
			SMTPAddr: e.SMTPAddr, StartTLS: tlsMode, Username: e.Username, Password: string(e.Password), PasswordEnv: e.PasswordEnv,
			From: e.From, ToOperators: e.ToOperators, UserAddresses: e.UserAddresses, UserAddressTemplate: e.UserAddressTemplate,
			UpgradeURL: e.UpgradeURL, MaxRetries: e.MaxRetries, Timeout: e.Timeout.D(), Backoff: e.Backoff.D(), MaxBackoff: e.MaxBackoff.D(),
		},
		Dashboard: notify.DashboardConfig{Size: a.Dashboard.Size},
		Anomaly: notify.AnomalyConfig{
			Enabled: an.Enabled, Window: an.Window.D(), Factor: an.Factor, MinRate: an.MinRate,
			WarmUp: an.WarmUp, Smoothing: an.Smoothing, MaxSubjects: an.MaxSubjects,
		},
		Messages: notify.Messages{
			Warning: m.Warning, Exceeded: m.Exceeded, BalanceLow: m.BalanceLow,
			InsufficientBalance: m.InsufficientBalance, Anomaly: m.Anomaly,
		},
	}, errors.Join(errs...)
}

// redisOptions converts store.redis to the shared store's options.
func redisOptions(r config.RedisStoreConfig) redis.Options {
	return redis.Options{Addr: r.Addr, ClusterAddrs: r.Cluster.Addrs,
		SentinelMaster: r.Sentinel.Master, SentinelAddrs: r.Sentinel.Addrs, SentinelPassword: r.Sentinel.Password,
		Username: r.Username, Password: r.Password, DB: r.DB,
		Timeout: r.Timeout.D(), Prefix: r.Prefix, Lease: r.Lease, WaitReplicas: r.WaitReplicas}
}

// ledgerWriterOptions converts the ledger block (and the flush interval of
// the store block, which the writer shares) to the ledger writer's options.
func ledgerWriterOptions(f *config.File, logger *slog.Logger) ledger.WriterOptions {
	return ledger.WriterOptions{
		QueueSize:     f.Ledger.QueueSize,
		FlushInterval: f.Store.FlushInterval.D(),
		Retention:     time.Duration(f.Ledger.RetentionDays) * 24 * time.Hour,
		Logger:        logger,
	}
}

// telemetryOptions converts the tracing block to the telemetry options it
// gives; the caller adds those of the flags and the environment.
func telemetryOptions(f *config.File) telemetry.Options {
	return telemetry.Options{SampleAllowed: f.Tracing.SampleAllowed, SampleRejected: f.Tracing.SampleRejected}
}

// checkRoutes reports every route whose path_prefix is not a path as
// Envoy normalizes it, which no request could match: requests are matched
// on the normalized path. It is the ext_authz side of the routes block;
// the file's validation has already required the leading /.
func checkRoutes(f *config.File) []error {
	var errs []error
	for i, r := range f.Routes.Rules {
		if !strings.HasPrefix(r.PathPrefix, "/") {
			continue
		}
		if n := pathnorm.Path(r.PathPrefix); n != r.PathPrefix {
			errs = append(errs, &engine.FieldError{Path: f.Routes.RulePath(i) + ".path_prefix", Problem: fmt.Sprintf(
				"%q is not a normalized path, so no request could match it: requests are matched on the path as Envoy normalizes it "+
					"(dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex, no query); write %q",
				r.PathPrefix, n)})
		}
	}
	return errs
}

// authzOptions is the ext_authz server's fixed wiring: the logger, and the
// observer that records every decision. A reload never rebuilds it.
func authzOptions(logger *slog.Logger, obs *observer) extauthz.Options {
	return extauthz.Options{Logger: logger, Observe: obs.observe}
}

// authzPolicy maps the configuration onto the ext_authz policy: identity,
// routes, pricing of bodies and the answers' settings. A reload builds a
// new one and swaps it in whole.
func authzPolicy(file *config.File) (extauthz.Policy, error) {
	id := file.Identity
	sources := make([]extauthz.Source, 0, len(id.Sources))
	for _, s := range id.Sources {
		src, err := extauthz.ParseSource(s)
		if err != nil {
			return extauthz.Policy{}, err
		}
		sources = append(sources, src)
	}
	routes := make([]extauthz.Route, len(file.Routes.Rules))
	for i, r := range file.Routes.Rules {
		routes[i] = extauthz.Route{PathPrefix: r.PathPrefix, Method: r.Method, Action: r.Action, Workflow: r.Workflow}
	}
	unrouted, err := extauthz.ParseUnrouted(file.Routes.Default)
	if err != nil {
		return extauthz.Policy{}, err
	}
	upgrade := make(map[engine.Tier]string, len(file.QuotaManager.Tiers))
	for name, t := range file.QuotaManager.Tiers {
		upgrade[engine.Tier(name)] = t.UpgradeURL
	}
	return extauthz.Policy{
		Identity: extauthz.IdentityOptions{
			Sources:   sources,
			JWTFilter: id.JWT.Filter, JWTPayloadKey: id.JWT.PayloadKey,
			SubjectClaim: id.JWT.SubjectClaim, TierClaim: id.JWT.TierClaim, RolesClaim: id.JWT.RolesClaim, TeamClaim: id.JWT.TeamClaim,
			Header: id.Header.Name, HeaderTrusted: id.Header.Trusted,
			APIKeyHeader: id.APIKey.Header, APIKeys: file.APIKeys(),
		},
		Routes:                    routes,
		Unrouted:                  unrouted,
		StripHeaders:              id.StripHeaders,
		InsufficientBalanceStatus: file.Server.InsufficientBalanceStatus,
		WordsPerByte:              file.Pricing.PartialBodyWordsPerByte,
		MaxBodyBytes:              file.Pricing.MaxBodyBytes,
		UpgradeURL:                func(t engine.Tier) string { return upgrade[t] },
	}, nil
}
