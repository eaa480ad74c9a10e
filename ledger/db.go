package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/quotagate/quotagate/store/sqlite" // the SQLite file's settings; registers the "sqlite" driver
)

// errCorrupt reports a stored block that cannot be decoded; Verify says
// which record.
var errCorrupt = errors.New("ledger: a stored record cannot be decoded: run quotagate ledger verify")

// Options configures Open. The zero value is the default.
type Options struct {
	// Sync makes every SQLite commit durable against power loss
	// (synchronous=FULL); the default survives a killed process but may
	// lose the last commits on power loss. PostgreSQL ignores it.
	Sync bool
	// BusyTimeout is how long a SQLite statement waits for another
	// process's lock. Zero means 5 s.
	BusyTimeout time.Duration
	// File is the SQLite file at dsn, already open (by the state store
	// in the same file, see store/sqlite's Store.File): the ledger takes
	// a share of it, so that both write through its one writer
	// connection, whose page cache then stays valid. Nil opens the file
	// anew (Sync and BusyTimeout apply then); PostgreSQL ignores it.
	File *sqlite.File
}

// Ledger is the append-only usage and audit log in one database, SQLite or
// PostgreSQL. It is safe for concurrent use, also by several processes on
// one database: appends are serialized on the chain head.
type Ledger struct {
	// db is for reads; w for writes. They are one pool on PostgreSQL; on
	// SQLite, w is its File's one writer connection.
	db, w   *sql.DB
	file    *sqlite.File // SQLite only
	dialect dialect
	where   string // the file path or the DSN without its password

	foldMu  sync.Mutex // one FoldRollups at a time in this process
	pending pendingRollups

	closeOnce sync.Once
	closeErr  error
}

// dialect is what differs between the back ends; the SQL is otherwise the
// same text for both.
type dialect struct {
	name string
	// mark starts a numbered placeholder in generated statements.
	mark byte
	// lockHead is appended to the SELECT of the chain head inside a write
	// transaction. SQLite needs nothing: its write transactions begin
	// IMMEDIATE, holding the database's write lock.
	lockHead string
	// lockMigrations serializes migrations between processes.
	lockMigrations string
	// clustered replaces clusteredPK in the migrations.
	clustered string
}

var (
	sqliteDialect   = dialect{name: "sqlite", mark: '?', clustered: " WITHOUT ROWID"}
	postgresDialect = dialect{
		name:           "postgres",
		mark:           '$',
		lockHead:       " FOR UPDATE",
		lockMigrations: "SELECT pg_advisory_xact_lock(7402145911)",
	}
)

// IsPostgres reports whether dsn names a PostgreSQL database
// ("postgres://..." or "postgresql://...") rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the ledger at dsn, creating its schema or bringing it up to
// date. A "postgres://" or "postgresql://" DSN selects PostgreSQL; anything
// else is a SQLite file path (its directory is created if missing). Open
// starts no goroutines.
func Open(ctx context.Context, dsn string, opts Options) (*Ledger, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	l := &Ledger{}
	var err error
	switch {
	case dsn == "":
		return nil, errors.New("ledger: no ledger given: pass a SQLite file path or a postgres:// DSN (--ledger)")
	case IsPostgres(dsn):
		l.dialect, l.where = postgresDialect, redact(dsn)
		l.db, err = sql.Open("pgx", dsn)
		l.w = l.db
	case opts.File != nil:
		l.dialect, l.where = sqliteDialect, dsn
		if opts.File.Path() != dsn {
			return nil, fmt.Errorf("ledger: open %s: the shared file is %s, not this one", dsn, opts.File.Path())
		}
		l.file, err = opts.File.Share()
	default:
		l.dialect, l.where = sqliteDialect, dsn
		if err := sqlite.PrepareDir(filepath.Dir(dsn), "directory", "point --ledger elsewhere"); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		l.file, err = sqlite.OpenFile(dsn, opts.Sync, opts.BusyTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", l.where, err)
	}
	if l.file != nil {
		l.db, l.w = l.file.Reader(), l.file.Writer()
	}
	if err := l.migrate(ctx); err != nil {
		l.closeDB()
		return nil, fmt.Errorf("ledger: %s: %w", l.where, err)
	}
	return l, nil
}

// closeDB closes the database, or gives back the ledger's share of its
// SQLite file.
func (l *Ledger) closeDB() error {
	if l.file != nil {
		return l.file.Close()
	}
	return l.db.Close()
}

// redact drops the password from a DSN, for error messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres database"
	}
	return u.Redacted()
}

// Backend returns "sqlite" or "postgres".
func (l *Ledger) Backend() string { return l.dialect.name }

// Close folds the pending rollups (see FoldRollups), then closes the
// database. It is idempotent.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		foldErr := l.FoldRollups(ctx)
		l.closeErr = errors.Join(foldErr, l.closeDB())
	})
	return l.closeErr
}

// migrate applies the missing migrations in one transaction, holding a
// lock so that replicas starting together do not race.
func (l *Ledger) migrate(ctx context.Context) error {
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if l.dialect.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, l.dialect.lockMigrations); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ledger_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM ledger_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade quotagate", have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		for _, stmt := range migrations[i] {
			stmt = strings.ReplaceAll(stmt, clusteredPK, l.dialect.clustered)
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_migrations (version) VALUES ($1)`, i+1); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return tx.Commit()
}
