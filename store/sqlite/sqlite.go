package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quotagate/quotagate/engine"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// ErrClosed is returned by Load and Save after Close.
var ErrClosed = errors.New("store/sqlite: closed")

// Options configures Open. The zero value is the default: DurabilityBatch
// and a five-second busy timeout.
type Options struct {
	// Durability says when a Save is safe; see Durability.
	Durability Durability
	// BusyTimeout is how long a statement waits for another connection's
	// lock (another process on the same file). Zero means 5 s.
	BusyTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	return o
}

// Store is an engine.Store in one SQLite file. It is safe for concurrent
// use.
type Store struct {
	file *File
	opts Options
	// The statements, prepared once (on the connection that runs them)
	// instead of parsed on every call: load on the readers; upsert and
	// the pending table's on the writer.
	load, upsert, insertLog, deleteLog, insertPendingLog *sql.Stmt

	// The snapshot log (snaplog.go). recent holds, per key, the newest
	// snapshot this store wrote to the log since the last fold; logSeqs
	// are those log rows, of logBytes bytes of snapshots. Only the
	// leader (or Close) changes them, under rmu, which Load takes too.
	rmu             sync.Mutex
	recent          map[string]row
	logSeqs         []int64
	logBytes        int
	folds, foldErrs atomic.Int64
	foldAt          foldLimits

	mu       sync.Mutex
	pending  []*saveReq // waiting for the next commit
	leading  bool       // a Save is committing; the others queue
	closed   bool
	inflight sync.WaitGroup
	commits  atomic.Int64 // transactions committed by Save

	// The pending log (pending.go): its bytes, the rows written since
	// the last compaction, the bytes that one wrote (what is live, when
	// pend does not track it), the latest now written (unix ns), and the
	// growth past twice the live bytes that starts a compaction.
	pendLogBytes, pendLiveBytes atomic.Int64
	pendLogRows, pendNow        atomic.Int64
	compactMin                  int64
	compactions, compactErrs    atomic.Int64
	pend                        pendTrack // the leader's (pendtrack.go)

	closeOnce sync.Once
	closeErr  error
}

var _ engine.Store = (*Store)(nil)

// Open opens (creating if missing) the SQLite database at path and brings
// its schema up to date. The parent directory is created if missing; when
// it cannot be created or written, the error names it and says what to do.
// Open starts no goroutines.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := OpenFile(path, opts.Durability == DurabilitySync, opts.BusyTimeout)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: %w", err)
	}
	if err := migrate(ctx, f.Writer()); err != nil {
		f.Close()
		return nil, fmt.Errorf("store/sqlite: %s: %w", path, err)
	}
	if err := recoverLog(ctx, f.Writer(), upsert); err != nil {
		f.Close()
		return nil, fmt.Errorf("store/sqlite: %s: %w", path, err)
	}
	s := &Store{file: f, opts: opts, recent: make(map[string]row), foldAt: defaultFoldLimits, compactMin: defaultCompactMin}
	if err := s.prepare(ctx); err != nil {
		s.closeStmts()
		f.Close()
		return nil, fmt.Errorf("store/sqlite: %s: prepare: %w", path, err)
	}
	if err := s.trackLog(ctx); err != nil {
		s.closeStmts()
		f.Close()
		return nil, fmt.Errorf("store/sqlite: %s: read the pending log: %w", path, err)
	}
	return s, nil
}

// prepare prepares the store's statements.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		db   *sql.DB
		sql  string
	}{
		{&s.load, s.file.Reader(), `SELECT version, data FROM snapshots WHERE key = ?1`},
		{&s.upsert, s.file.Writer(), upsert},
		{&s.insertLog, s.file.Writer(), `INSERT INTO snapshot_log (data) VALUES (?1)`},
		{&s.deleteLog, s.file.Writer(), `DELETE FROM snapshot_log WHERE seq = ?1`},
		{&s.insertPendingLog, s.file.Writer(), `INSERT INTO pending_log (data) VALUES (?1)`},
	} {
		stmt, err := p.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return err
		}
		*p.stmt = stmt
	}
	return nil
}

// closeStmts closes the statements prepare prepared.
func (s *Store) closeStmts() {
	for _, st := range []*sql.Stmt{s.load, s.upsert, s.insertLog, s.deleteLog, s.insertPendingLog} {
		if st != nil {
			st.Close()
		}
	}
}

// File returns the store's database file, for sharing its writer with
// the ledger when both are in it (Ledger's Options.File). Take a share
// (File.Share) to keep it beyond the store's Close.
func (s *Store) File() *File { return s.file }

// DSN is the modernc.org/sqlite connection string quotagate opens every
// SQLite file with (the state store here, the ledger in package ledger:
// under --data-dir they share one file, so they must agree on its page
// size and journal): WAL, busyTimeout for another connection's lock,
// write transactions that take the write lock at BEGIN (so two processes
// never deadlock upgrading a read lock), and synchronous FULL when sync
// (every commit survives power loss), else NORMAL.
func DSN(path string, sync bool, busyTimeout time.Duration) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	// The page cache holds the B-trees that every batch updates; at
	// SQLite's default (2 MiB) tens of thousands of subjects miss it and
	// each write reads its pages back from the OS. A longer WAL between
	// checkpoints copies a page rewritten by many batches back once.
	q.Add("_pragma", fmt.Sprintf("cache_size(%d)", -cacheKiB))
	q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walPages))
	// Larger pages than SQLite's 4 KiB mean fewer WAL frames (two writes
	// each) per commit, for the ledger's blocks as for the scattered rows
	// of a flush; but not past 8 KiB: modernc.org/sqlite's allocator
	// serves up to 16 KiB from its slabs and maps anything larger on its
	// own, so each cached page of 16 KiB (plus its header) cost an mmap,
	// page faults, zeroing and an munmap with a TLB flush. SQLite takes
	// the page size only when it creates the file; older files keep
	// theirs.
	q.Add("_pragma", fmt.Sprintf("page_size(%d)", pageSize))
	// Temporary files (statement and savepoint journals, sorts) are kept
	// in memory rather than written out.
	q.Add("_pragma", "temp_store(MEMORY)")
	if sync {
		q.Set("_synchronous", "FULL")
	} else {
		q.Set("_synchronous", "NORMAL")
	}
	return "file:" + path + "?" + q.Encode()
}

// checkDir is PrepareDir for the store's data directory.
func checkDir(dir string) error {
	if err := PrepareDir(dir, "data directory", "choose another data directory (--data-dir)"); err != nil {
		return fmt.Errorf("store/sqlite: %w", err)
	}
	return nil
}

// PrepareDir creates dir if missing and proves it writable by creating
// and removing a file in it. Its error names dir as what (e.g. "data
// directory") and ends with what to do: create it with write permission
// for this user, or the alternative.
func PrepareDir(dir, what, alternative string) error {
	hint := "create it with write permission for this user, or " + alternative
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%s %q cannot be created: %w; %s", what, dir, err, hint)
	}
	f, err := os.CreateTemp(dir, ".quotagate-write-check-*")
	if err != nil {
		return fmt.Errorf("%s %q is not writable: %w; %s", what, dir, err, hint)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Commits returns how many transactions Save has committed. With group
// commit it grows more slowly than the number of Save calls; under
// DurabilitySync each is one fsync of the WAL.
func (s *Store) Commits() int64 { return s.commits.Load() }

// Path returns the database file's path.
func (s *Store) Path() string { return s.file.Path() }

// Load returns the saved snapshot for key, or ok == false if none.
func (s *Store) Load(ctx context.Context, key string) (engine.Snapshot, bool, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return engine.Snapshot{}, false, ErrClosed
	}
	// The newer of the table's row and the one in recent: recent may
	// hold an older version than a fold wrote, when a stale save came
	// after it.
	s.rmu.Lock()
	rw, logged := s.recent[key]
	s.rmu.Unlock()
	var version int64
	var data []byte
	err := s.load.QueryRowContext(ctx, key).Scan(&version, &data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if !logged {
			return engine.Snapshot{}, false, nil
		}
	case err != nil:
		return engine.Snapshot{}, false, fmt.Errorf("store/sqlite: load %q: %w", key, err)
	}
	if logged && (data == nil || rw.version > version) {
		data = rw.data
	}
	return decodeRow(key, data)
}

// decodeRow decodes the snapshot of key.
func decodeRow(key string, data []byte) (engine.Snapshot, bool, error) {
	snap, err := decodeSnapshot(data)
	if err != nil {
		return engine.Snapshot{}, false, fmt.Errorf("store/sqlite: load %q: decode: %w", key, err)
	}
	snap.Key = key
	return snap, true, nil
}

// Close waits for Saves in progress, folds the snapshot log into the
// table, then closes the database. It is idempotent; later calls return
// the first call's result. When the fold fails, the log keeps the
// snapshots and the next Open folds them.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.inflight.Wait()
		ferr := s.fold(context.Background())
		s.closeStmts()
		s.closeErr = errors.Join(ferr, s.file.Close())
	})
	return s.closeErr
}

// migrations are applied in order; PRAGMA user_version records how many
// have run. Each may hold several statements, separated by semicolons.
// Append only: never edit one that has shipped.
var migrations = []string{
	`CREATE TABLE snapshots (
		key     TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		data    BLOB NOT NULL
	)`,
	// The same table stored in its key's order: one B-tree instead of a
	// rowid table plus the key's index, so that each upsert of a flush
	// seeks and writes once.
	`CREATE TABLE snapshots_by_key (
		key     TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		data    BLOB NOT NULL
	) WITHOUT ROWID;
	INSERT INTO snapshots_by_key (key, version, data) SELECT key, version, data FROM snapshots;
	DROP TABLE snapshots;
	ALTER TABLE snapshots_by_key RENAME TO snapshots`,
	// Pending decisions and settled ids (engine.PendingStore), dropped
	// when they expire.
	`CREATE TABLE pending (
		id      BLOB PRIMARY KEY,
		settled INTEGER NOT NULL,
		expires INTEGER NOT NULL,
		data    BLOB NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX pending_expires ON pending (expires)`,
	// Saves append their snapshots here, one row each, until a fold
	// writes the newest of each key into snapshots (snaplog.go).
	`CREATE TABLE snapshot_log (
		seq  INTEGER PRIMARY KEY,
		data BLOB NOT NULL
	)`,
	// Transactions append the pending records they write here, one row
	// each; a compaction rewrites what is live (pending.go). The table
	// pending is read until the first compaction empties it.
	`CREATE TABLE pending_log (
		seq  INTEGER PRIMARY KEY,
		data BLOB NOT NULL
	)`,
}

// migrate applies the missing migrations in one write transaction, so two
// processes opening a new file at once do not both apply them.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade quotagate", have, len(migrations))
	}
	for i := have; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return tx.Commit()
}

// cacheKiB is the SQLite page cache per connection (a negative
// cache_size is in KiB); pages are allocated as they are used. walPages
// is the WAL's length, in pages, that triggers a checkpoint (32 MiB at
// pageSize; SQLite's default is 1000 pages). pageSize is the page size of
// a new database file, in bytes (see DSN).
const (
	cacheKiB = 32 << 10
	walPages = 4096
	pageSize = 8 << 10
)
