package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/redis"
	"github.com/quotagate/quotagate/store/sqlite"
)

// ErrNoStatePath is returned by Open for a SQLite state store with neither
// a StatePath nor a DataDir to put it in.
var ErrNoStatePath = errors.New("store/durable: the SQLite state store has no file: set a state path or a data directory")

// Store kinds, for Options.Kind.
const (
	KindMemory = "memory"
	KindSQLite = "sqlite"
	KindRedis  = "redis"
)

// Options say which state store and ledger Open opens. The zero value is
// an in-memory store and no ledger.
type Options struct {
	// DataDir holds the default files: the ledger is DataDir/ledger.db,
	// and the SQLite state shares that file when the ledger is there, so
	// that Sync can commit a charge with its record; otherwise the state is
	// DataDir/state.db. Open does not create it. Empty means none.
	DataDir string
	// Kind is the state store: KindMemory, KindSQLite or KindRedis. Empty
	// means KindSQLite with a DataDir, KindMemory without.
	Kind string
	// StatePath is the SQLite state file. Empty means DataDir's default.
	StatePath string
	// LedgerDSN is the ledger: a SQLite file or a postgres:// URL. Empty
	// means DataDir/ledger.db with a DataDir, and no ledger without.
	LedgerDSN string
	// Sync is durability sync: every charge and its ledger record are
	// durable before the Check is answered. False is batch.
	Sync bool
	// Redis configures the store of KindRedis.
	Redis redis.Options
	// Writer configures the ledger writer.
	Writer ledger.WriterOptions
}

// Backends are the durable parts behind the engine: the state store (and,
// for Redis, the shared authority), the ledger and the writer that feeds
// it, and in durability sync with the state and the ledger in one SQLite
// file, the Committer. A nil field is not configured. Close releases them.
type Backends struct {
	// Store is the engine's Store; nil keeps the engine's in-memory one.
	// It is the Committer when there is one.
	Store engine.Store
	// Authority is the Redis store in its role of engine.Authority; nil
	// otherwise.
	Authority engine.Authority
	// Redis is the Redis store, for its health and call counters; nil for
	// other stores.
	Redis *redis.Store
	// Desc names the store for logs: "memory", "sqlite:/data/ledger.db",
	// "redis:127.0.0.1:6379".
	Desc   string
	Ledger *ledger.Ledger
	Writer *ledger.Writer
	// Committer commits each decision's state with its ledger record; it
	// must be the engine's Deferrer. Nil unless Sync with the state and
	// the ledger in one SQLite file.
	Committer *Committer
	// Sync is Options.Sync.
	Sync bool

	closeStore func() error
	closed     bool
}

// Open opens the state store and the ledger that o asks for. On error,
// whatever was opened is closed again.
func Open(ctx context.Context, o Options) (_ *Backends, err error) {
	b := &Backends{Desc: KindMemory, Sync: o.Sync}
	defer func() {
		if err != nil {
			b.Close(ctx, slog.New(slog.DiscardHandler))
		}
	}()
	dsn := o.ledgerDSN()
	if err := b.openStore(ctx, o, dsn); err != nil {
		return nil, err
	}
	if err := b.openLedger(ctx, o, dsn); err != nil {
		return nil, err
	}
	if st, ok := b.Store.(*sqlite.Store); ok && o.Sync && b.Ledger != nil && st.Path() == dsn {
		b.Committer = NewCommitter(st, b.Ledger)
		b.Store = b.Committer
	}
	return b, nil
}

// ledgerDSN resolves LedgerDSN and the data directory's default; empty
// means no ledger.
func (o Options) ledgerDSN() string {
	switch {
	case o.LedgerDSN != "":
		return o.LedgerDSN
	case o.DataDir != "":
		return filepath.Join(o.DataDir, "ledger.db")
	}
	return ""
}

// openStore opens the state store.
func (b *Backends) openStore(ctx context.Context, o Options, dsn string) error {
	kind := o.Kind
	if kind == "" {
		kind = KindMemory
		if o.DataDir != "" {
			kind = KindSQLite
		}
	}
	switch kind {
	case KindMemory:
		return nil
	case KindSQLite:
		path := o.StatePath
		if path == "" {
			if o.DataDir == "" {
				return ErrNoStatePath
			}
			path = filepath.Join(o.DataDir, "state.db")
			if dsn == filepath.Join(o.DataDir, "ledger.db") {
				path = dsn
			}
		}
		d := sqlite.DurabilityBatch
		if o.Sync {
			d = sqlite.DurabilitySync
		}
		st, err := sqlite.Open(ctx, path, sqlite.Options{Durability: d})
		if err != nil {
			return fmt.Errorf("store/durable: state store: %w", err)
		}
		b.Store, b.closeStore, b.Desc = st, st.Close, "sqlite:"+path
	case KindRedis:
		st, err := redis.Open(o.Redis)
		if err != nil {
			return fmt.Errorf("store/durable: state store: %w", err)
		}
		b.Store, b.Authority, b.Redis, b.closeStore, b.Desc = st, st, st, st.Close, o.Redis.Describe()
	default:
		return fmt.Errorf("store/durable: state store kind %q: want %s, %s or %s", kind, KindMemory, KindSQLite, KindRedis)
	}
	return nil
}

// openLedger opens the ledger at dsn, if any, and its writer.
func (b *Backends) openLedger(ctx context.Context, o Options, dsn string) error {
	if dsn == "" {
		return nil
	}
	lo := ledger.Options{Sync: o.Sync}
	if st, ok := b.Store.(*sqlite.Store); ok && st.Path() == dsn {
		// One file: the ledger writes through the store's writer.
		lo.File = st.File()
	}
	led, err := ledger.Open(ctx, dsn, lo)
	if err != nil {
		return fmt.Errorf("store/durable: %w", err)
	}
	b.Ledger = led
	b.Writer = ledger.NewWriter(led, o.Writer)
	return nil
}

// Close saves what failed commits left, then closes the store and the
// ledger, logging what fails to logger. Flush the writer first. Close is
// idempotent; it is not safe for concurrent use.
func (b *Backends) Close(ctx context.Context, logger *slog.Logger) {
	if b.closed {
		return
	}
	b.closed = true
	if b.Committer != nil {
		if err := b.Committer.Close(context.WithoutCancel(ctx)); err != nil {
			logger.Error("saving the state of failed commits", "store", b.Desc, "err", err)
		}
	}
	if r := b.Redis; r != nil {
		s := r.Stats()
		logger.Info("redis store calls", "round_trips", s.Calls, "batched_commands", s.Batched,
			"profile_calls", s.Profiles, "errors", s.Errors)
	}
	if b.closeStore != nil {
		if err := b.closeStore(); err != nil {
			logger.Error("closing the state store", "store", b.Desc, "err", err)
		}
	}
	if b.Ledger != nil {
		if err := b.Ledger.Close(); err != nil {
			logger.Error("closing the ledger", "err", err)
		}
	}
}
