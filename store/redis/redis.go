package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/engine"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("store/redis: closed")

// Options configure a Store. The zero value of each field means its
// documented default.
type Options struct {
	// Addr is the server's host:port, used by Open. Empty means
	// "127.0.0.1:6379".
	Addr string
	// Username, Password and DB select the account and database (Open).
	Username, Password string
	DB                 int
	// PoolSize bounds the connections Open's client keeps. Zero means
	// go-redis's default (10 per CPU).
	PoolSize int
	// Timeout is the deadline of every Check-path call (Charge,
	// AddCredits). Zero means 50ms.
	Timeout time.Duration
	// SnapshotTimeout is the deadline of Load and Save, which run behind
	// the Check path. Zero means 1s.
	SnapshotTimeout time.Duration
	// Prefix starts every key. Empty means "qg".
	Prefix string
	// Lease, when positive, turns on leased mode: a replica reserves
	// blocks of Lease units of a subject's fixed-window limits, and of
	// Lease times a request's cost of a balance's allowance, and serves
	// from them without a round trip (see the package doc for the error
	// bound). Zero means exact mode.
	Lease int64
	// Pipelines bounds the pipelines of charge scripts in flight at once;
	// the Checks that arrive meanwhile wait and go out together in the
	// next one. Zero means 1, which makes the largest batches and so the
	// fewest system calls per Check.
	Pipelines int
	// ProfileTTL is how often a replica polls whether profiles changed
	// (engine.ProfileStore). Zero means 5s: a tier change made on one
	// replica binds on every other within 5s.
	ProfileTTL time.Duration
	// ExpiryMargin is added to every counter's expiry, so a replica whose
	// clock lags still finds the counter of the window it is in. Zero
	// means 10s.
	ExpiryMargin time.Duration
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:6379"
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.SnapshotTimeout <= 0 {
		o.SnapshotTimeout = time.Second
	}
	if o.Prefix == "" {
		o.Prefix = "qg"
	}
	if o.ProfileTTL <= 0 {
		o.ProfileTTL = 5 * time.Second
	}
	if o.ExpiryMargin <= 0 {
		o.ExpiryMargin = 10 * time.Second
	}
	return o
}

// Store is the Redis authority and snapshot store. It implements
// engine.Authority and engine.Store, and is safe for concurrent use.
type Store struct {
	client goredis.UniversalClient
	opts   Options
	own    bool        // Close closes client
	leases *leaseTable // nil in exact mode
	batch  *batcher
	prof   profilePoll
	// lastErr holds the error of the last call (nil: it succeeded).
	lastErr   atomic.Pointer[error]
	calls     atomic.Uint64
	batched   atomic.Uint64
	profiles  atomic.Uint64
	loads     atomic.Uint64
	errs      atomic.Uint64
	closeOnce sync.Once
	closed    atomic.Bool
}

var (
	_ engine.Authority    = (*Store)(nil)
	_ engine.Store        = (*Store)(nil)
	_ engine.ProfileStore = (*Store)(nil)
)

// New returns a Store on client, which the caller keeps and closes. The
// client should be built with MaxRetries -1 (a charge must never be sent
// twice) and ContextTimeoutEnabled (so the per-call deadline bounds socket
// reads); Open does both.
func New(client goredis.UniversalClient, opts Options) *Store {
	s := &Store{client: client, opts: opts.withDefaults()}
	s.batch = newBatcher(s, s.opts.Pipelines)
	if s.opts.Lease > 0 {
		s.leases = newLeaseTable(s.opts.Lease)
	}
	return s
}

// Open builds a client for opts.Addr with the settings Store needs and
// returns a Store that closes it on Close. It does not connect: the first
// call does, and go-redis reconnects after a failure on its own.
func Open(opts Options) *Store {
	opts = opts.withDefaults()
	c := goredis.NewClient(&goredis.Options{
		Addr:                  opts.Addr,
		Username:              opts.Username,
		Password:              opts.Password,
		DB:                    opts.DB,
		PoolSize:              opts.PoolSize,
		MaxRetries:            -1,
		DialTimeout:           max(opts.Timeout, opts.SnapshotTimeout),
		ReadTimeout:           max(opts.Timeout, opts.SnapshotTimeout),
		WriteTimeout:          max(opts.Timeout, opts.SnapshotTimeout),
		ContextTimeoutEnabled: true,
	})
	s := New(c, opts)
	s.own = true
	return s
}

// Close closes the client if Open made it. It is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.own {
			err = s.client.Close()
		}
	})
	return err
}

// Ping checks that the server answers within the Check deadline.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return s.record(s.client.Ping(ctx).Err(), "ping")
}

// Healthy reports whether the last call to Redis succeeded. A Store that
// made no call yet is healthy.
func (s *Store) Healthy() bool { return s.LastError() == nil }

// LastError returns the error of the last call to Redis, or nil when it
// succeeded.
func (s *Store) LastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats are a Store's call counters.
type Stats struct {
	// Calls counts round trips to Redis; Errors those that failed.
	Calls, Errors uint64
	// Batched counts the commands sent in pipelines (charge and status
	// scripts, profile reads): Batched/Calls is about the mean batch.
	Batched uint64
	// Profiles counts profile reads and polls (LoadProfile,
	// PollProfiles), and Loads snapshot reads (Load), each a round trip
	// unless batched with others.
	Profiles, Loads uint64
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{Calls: s.calls.Load(), Errors: s.errs.Load(), Batched: s.batched.Load(),
		Profiles: s.profiles.Load(), Loads: s.loads.Load()}
}

// record counts one round trip and remembers its outcome. It returns err
// wrapped with op, or nil.
func (s *Store) record(err error, op string) error {
	s.calls.Add(1)
	if err != nil && !errors.Is(err, goredis.Nil) {
		s.errs.Add(1)
		err = fmt.Errorf("store/redis: %s: %w", op, err)
		s.lastErr.Store(&err)
		return err
	}
	if s.lastErr.Load() != nil {
		s.lastErr.Store(nil)
	}
	return nil
}

// windowID names the window starting at start of owner's limit, under
// the hash tag tag.
func windowID(tag, owner, limit string, start time.Time) string {
	b := make([]byte, 0, len(tag)+len(owner)+len(limit)+21)
	b = append(b, "w{"...)
	b = append(b, tag...)
	b = append(b, "}:"...)
	b = append(b, owner...)
	b = append(b, ':')
	b = append(b, limit...)
	b = append(b, ':')
	b = strconv.AppendInt(b, start.UnixMilli(), 10)
	return string(b)
}

// stateKey names owner's state hash: its window counters and its balance.
func (s *Store) stateKey(tag, owner string) string {
	return s.opts.Prefix + ":{" + tag + "}:o:" + owner
}

// epochKey names the profile epoch, bumped by every SaveProfile.
func (s *Store) epochKey() string { return s.opts.Prefix + ":profiles" }

// snapshotKey names key's snapshot hash.
func (s *Store) snapshotKey(key string) string {
	return s.opts.Prefix + ":{" + key + "}:s"
}
