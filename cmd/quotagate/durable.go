package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/redis"
	"github.com/quotagate/quotagate/store/sqlite"
)

// backends are the durable parts behind the engine: the state store (and,
// for Redis, the shared authority), the ledger and the writer that feeds
// it. A nil field is not configured.
//
// Under a data directory the state and the ledger share DIR/ledger.db, so
// that durability sync commits each charge and its ledger record in one
// transaction before the Check is answered (see syncCommitter): after a
// crash, the balances and the ledger agree exactly. With the ledger
// elsewhere (--ledger, ledger.dsn, PostgreSQL) sync makes two commits, the
// state's then the record's, and a crash between them can leave the
// charges of the Checks in flight without their records. In batch mode,
// a crash loses at most one flush interval of state and of ledger.
type backends struct {
	// store replaces the engine's in-memory store; nil keeps it.
	store     engine.Store
	authority engine.Authority
	// closeStore closes the store; nil when there is nothing to close.
	closeStore func() error
	// redis is the Redis store, whose call counters close logs; nil for
	// other stores.
	redis *redis.Store
	// storeDesc names the store for the start-up log ("memory",
	// "sqlite:/data/ledger.db", "redis:127.0.0.1:6379").
	storeDesc string
	led       *ledger.Ledger
	writer    *ledger.Writer
	// commit, in durability sync with the state and the ledger in one
	// SQLite file, commits each Check's state with its record.
	commit *syncCommitter
	// sync is durability sync: every charge and its ledger record are
	// committed before the Check is answered.
	sync bool
}

// durability resolves --durability and store.durability to sync or not.
func durability(flag string, file *config.File) (bool, error) {
	switch flag {
	case "":
		return file.Store.Durability == "sync", nil
	case "batch", "async":
		return false, nil
	case "sync":
		return true, nil
	}
	return false, exitError{code: 2, err: fmt.Errorf("serve: --durability %q: want batch or sync", flag)}
}

// openBackends opens the store and the ledger that the configuration and
// flags ask for. On error, whatever was opened is closed again.
func openBackends(ctx context.Context, file *config.File, o assembleOptions) (b *backends, err error) {
	b = &backends{storeDesc: "memory"}
	if b.sync, err = durability(o.Durability, file); err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		if err := ensureDataDir(o.DataDir); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			b.close(o.Logger)
		}
	}()
	dsn := ledgerDSNFor(file, o)
	if err := b.openStore(ctx, file, o, dsn); err != nil {
		return nil, err
	}
	if err := b.openLedger(ctx, file, o, dsn); err != nil {
		return nil, err
	}
	if st, ok := b.store.(*sqlite.Store); ok && b.sync && b.led != nil && st.Path() == dsn {
		b.commit = newSyncCommitter(st, b.led)
		b.store = b.commit
	}
	return b, nil
}

// ledgerDSNFor resolves --ledger, ledger.dsn and the data directory's
// default, DIR/ledger.db; empty means no ledger.
func ledgerDSNFor(file *config.File, o assembleOptions) string {
	switch {
	case o.LedgerDSN != "":
		return o.LedgerDSN
	case file.Ledger.DSN != "":
		return file.Ledger.DSN
	case o.DataDir != "":
		return filepath.Join(o.DataDir, "ledger.db")
	}
	return ""
}

// openStore opens the state store. Under a data directory, the SQLite
// state lives in the ledger's file when that is the default DIR/ledger.db,
// so that durability sync can commit a charge and its ledger record in one
// transaction; otherwise it is DIR/state.db.
func (b *backends) openStore(ctx context.Context, file *config.File, o assembleOptions, dsn string) error {
	kind := file.Store.Kind
	if kind == "" {
		kind = "memory"
		if o.DataDir != "" {
			kind = "sqlite"
		}
	}
	switch kind {
	case "sqlite":
		path := file.Store.Path
		if path == "" {
			if o.DataDir == "" {
				return exitError{code: 2, err: errors.New("serve: store.kind is sqlite but neither store.path nor --data-dir says where; set one of them")}
			}
			path = filepath.Join(o.DataDir, "state.db")
			if dsn == filepath.Join(o.DataDir, "ledger.db") {
				path = dsn
			}
		}
		d := sqlite.DurabilityBatch
		if b.sync {
			d = sqlite.DurabilitySync
		}
		st, err := sqlite.Open(ctx, path, sqlite.Options{Durability: d})
		if err != nil {
			return fmt.Errorf("serve: state store: %w", err)
		}
		b.store, b.closeStore, b.storeDesc = st, st.Close, "sqlite:"+path
	case "redis":
		opts := redisOptions(file.Store.Redis)
		st, err := redis.Open(opts)
		if err != nil {
			return fmt.Errorf("serve: state store: %w", err)
		}
		b.store, b.authority, b.closeStore, b.storeDesc = st, st, st.Close, opts.Describe()
		b.redis = st
	}
	return nil
}

func (b *backends) openLedger(ctx context.Context, file *config.File, o assembleOptions, dsn string) error {
	if dsn == "" {
		return nil
	}
	led, err := ledger.Open(ctx, dsn, ledger.Options{Sync: b.sync})
	if err != nil {
		return fmt.Errorf("serve: ledger: %w", err)
	}
	b.led = led
	b.writer = ledger.NewWriter(led, ledgerWriterOptions(file, o.Logger))
	return nil
}

// close closes the store and the ledger; the writer must be flushed first.
func (b *backends) close(logger *slog.Logger) {
	if b.redis != nil {
		s := b.redis.Stats()
		logger.Info("redis store calls", "round_trips", s.Calls, "batched_commands", s.Batched,
			"profile_calls", s.Profiles, "errors", s.Errors)
	}
	if b.closeStore != nil {
		if err := b.closeStore(); err != nil {
			logger.Error("closing the state store", "store", b.storeDesc, "err", err)
		}
		b.closeStore = nil
	}
	if b.led != nil {
		if err := b.led.Close(); err != nil {
			logger.Error("closing the ledger", "err", err)
		}
	}
}

// ensureDataDir creates dir if missing and proves it writable, so that a
// bad --data-dir is one clear line at start-up rather than a failed flush.
func ensureDataDir(dir string) error {
	fix := "choose a writable directory with --data-dir (or $QUOTAGATE_DATA_DIR), or fix its permissions"
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("serve: data directory %s cannot be created: %w; %s", dir, err, fix)
	}
	f, err := os.CreateTemp(dir, ".quotagate-write-test-*")
	if err != nil {
		return fmt.Errorf("serve: data directory %s is not writable: %w; %s", dir, err, fix)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
