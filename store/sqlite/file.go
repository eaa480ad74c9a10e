package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// File is one SQLite database file as quotagate opens it (see DSN): one
// connection for every write, and a pool of connections for reads.
//
// SQLite lets one connection write at a time anyway, and a connection
// keeps its page cache only while no other connection writes the file:
// when another one has, its next transaction drops the whole cache and
// reads every page it touches again. With writes spread over a pool (and
// over a second pool, the ledger's, in the same file) each flush paid for
// that, in reads and allocations of up to the cache's size. One writer
// connection, shared by everything that writes the file in this process,
// keeps its cache warm; reads never invalidate it.
//
// A File is shared by its holders (the state store and the ledger in one
// file): each takes its share with Share and gives it back with Close,
// and the last Close closes the connections. Never hold a write
// transaction while waiting for another one: there is one connection.
type File struct {
	path        string
	write, read *sql.DB

	mu       sync.Mutex
	holders  int
	closeErr error
}

// OpenFile opens (creating if missing) the SQLite file at path with DSN's
// settings (sync selects synchronous=FULL). Nothing is read or written
// until the first statement. The caller holds one share of it.
func OpenFile(path string, sync bool, busyTimeout time.Duration) (*File, error) {
	dsn := DSN(path, sync, busyTimeout)
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The one writer never closes for idleness: its page cache is the
	// point of it.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return &File{path: path, write: w, read: r, holders: 1}, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Writer returns the pool of the one connection that makes every write
// (and the reads inside a write transaction). A caller begins a
// transaction or runs one statement on it and finishes before it waits
// for anything else that writes.
func (f *File) Writer() *sql.DB { return f.write }

// Reader returns the pool for reads outside a write transaction.
func (f *File) Reader() *sql.DB { return f.read }

// Share takes one more share of f for another holder, who calls Close
// when done with it. It fails once the last share was given back.
func (f *File) Share() (*File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holders == 0 {
		return nil, fmt.Errorf("share %s: %w", f.path, ErrClosed)
	}
	f.holders++
	return f, nil
}

// Close gives back one share; the last closes the connections and
// returns their error, which later calls return too.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holders == 0 {
		return f.closeErr
	}
	f.holders--
	if f.holders == 0 {
		f.closeErr = errors.Join(f.write.Close(), f.read.Close())
	}
	return f.closeErr
}
