package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/quotagate/quotagate/admin"
	"github.com/quotagate/quotagate/config"
)

// apply swaps a new, valid configuration in: the engine's rules (usage,
// balances and alert state are kept by the engine) and the ext_authz
// policy (its wiring, such as the decision observer, stays). Everything that can fail is built before anything changes, so a
// refused configuration changes nothing. Settings that only take effect at
// start-up (listeners, store, ledger, admin, alert channels, tracing) are
// logged as needing a restart.
func (a *app) apply(f *config.File) error {
	rules, err := engineRules(f)
	if err != nil {
		return err
	}
	pol, err := authzPolicy(f)
	if err != nil {
		return err
	}
	if err := pol.Validate(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := a.eng.Reload(rules); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := a.authz.SetPolicy(pol); err != nil {
		// The policy was built like the one in use; this is a bug.
		return fmt.Errorf("serve: the engine runs the new rules but the ext_authz policy was refused: %w", err)
	}
	if old := a.file.Swap(f); old != nil {
		if changed := restartOnly(old, f); len(changed) > 0 {
			a.logger.Warn("config reloaded, but these blocks only take effect after a restart", "blocks", changed)
		}
	}
	return nil
}

// restartOnly lists the blocks that differ between old and new and that a
// reload does not apply.
func restartOnly(old, cur *config.File) []string {
	var out []string
	for _, c := range []struct {
		name     string
		old, cur any
	}{
		{"server", old.Server, cur.Server},
		{"store", old.Store, cur.Store},
		{"ledger", old.Ledger, cur.Ledger},
		{"admin", old.Admin, cur.Admin},
		{"tracing", old.Tracing, cur.Tracing},
		{"quota_manager.alerts", old.QuotaManager.Alerts, cur.QuotaManager.Alerts},
	} {
		if !reflect.DeepEqual(c.old, c.cur) {
			out = append(out, c.name)
		}
	}
	return out
}

// watchConfig reloads the configuration file on change and on SIGHUP until
// ctx is done. Without a file (the embedded default) SIGHUP only logs that
// there is nothing to reload.
func (a *app) watchConfig(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if a.watcher != nil {
		go func() {
			if err := a.watcher.Run(ctx); err != nil {
				a.logger.Error("config file changes will not be noticed; send SIGHUP to reload", "err", err)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if a.watcher == nil {
				a.logger.Warn("SIGHUP: serving the embedded default configuration, there is no file to reload; start with --config to reload one")
				continue
			}
			a.logger.Info("SIGHUP: reloading the configuration", "path", a.configPath)
			a.watcher.Reload()
		}
	}
}

// configStatus is the reload part of /status and of the admin API's
// GET /v1/config.
func (a *app) configStatus() admin.ConfigStatus {
	st := admin.ConfigStatus{Source: a.configSource}
	if a.watcher != nil {
		r := a.watcher.Status()
		st.Generation, st.Failures, st.LastAttempt, st.LastSuccess, st.LastError =
			r.Generation, r.Failures, r.LastAttempt, r.LastSuccess, r.LastError
	}
	return st
}
