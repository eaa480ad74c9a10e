package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// "127.0.0.1:6379" unless ClusterAddrs or SentinelAddrs is set.
	Addr string
	// ClusterAddrs, when set, are seed nodes of a Redis Cluster (host:port
	// each; Open learns the others from them). Addr and SentinelAddrs must
	// then be empty.
	ClusterAddrs []string
	// SentinelMaster names the primary that the Sentinels at SentinelAddrs
	// (host:port each) watch; Open connects to whichever server they
	// report as primary, and follows a failover. Both or neither are set.
	SentinelMaster string
	SentinelAddrs  []string
	// SentinelPassword authenticates to the Sentinels themselves (empty:
	// none); Username and Password authenticate to the data servers.
	SentinelPassword string
	// Username, Password and DB select the account and database (Open). A
	// cluster has database 0 only.
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
	// WaitReplicas, when positive, ends every pipeline of charges with
	// WAIT for that many replicas (within the call's deadline): a charge
	// is reported only once replicas hold it, so a failover that promotes
	// one of them loses no admitted charge. A charge that the replicas do
	// not acknowledge in time fails (its outcome is unknown, as after a
	// timeout). Zero means asynchronous replication: a failover may lose
	// the charges of the replication lag (see the package doc).
	WaitReplicas int
	// ExpiryMargin is added to every counter's expiry, so a replica whose
	// clock lags still finds the counter of the window it is in. Zero
	// means 10s.
	ExpiryMargin time.Duration
}

func (o Options) withDefaults() Options {
	if o.Addr == "" && len(o.ClusterAddrs) == 0 && len(o.SentinelAddrs) == 0 {
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
	lastOK    atomic.Int64 // unix ns when the last call that succeeded started
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

// Validate reports a mix-up of the ways to reach Redis: exactly one of
// Addr, ClusterAddrs and SentinelAddrs (with SentinelMaster) may be set.
func (o Options) Validate() error {
	set := 0
	for _, ok := range []bool{o.Addr != "", len(o.ClusterAddrs) > 0, len(o.SentinelAddrs) > 0 || o.SentinelMaster != ""} {
		if ok {
			set++
		}
	}
	switch {
	case set > 1:
		return fmt.Errorf("store/redis: set one of Addr (one server), ClusterAddrs (Redis Cluster) and SentinelAddrs with SentinelMaster (Sentinel), got %d of them", set)
	case (len(o.SentinelAddrs) > 0) != (o.SentinelMaster != ""):
		return fmt.Errorf("store/redis: Sentinel needs both SentinelMaster (the primary's name, got %q) and SentinelAddrs (got %d addresses)",
			o.SentinelMaster, len(o.SentinelAddrs))
	case len(o.ClusterAddrs) > 0 && o.DB != 0:
		return fmt.Errorf("store/redis: a Redis Cluster has database 0 only, got DB %d", o.DB)
	}
	return nil
}

// Open builds a client with the settings Store needs (for one server, a
// Redis Cluster or a Sentinel-watched primary, as opts says) and returns a
// Store that closes it on Close. It does not connect: the first call
// does, and go-redis reconnects after a failure on its own. Every client
// is built never to retry or follow a redirect: a charge that met a MOVED
// or ASK reply, or a failover, fails, and the tier's failure mode applies
// (see the package doc).
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	io := max(opts.Timeout, opts.SnapshotTimeout)
	var c goredis.UniversalClient
	switch {
	case len(opts.ClusterAddrs) > 0:
		c = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:    opts.ClusterAddrs,
			Username: opts.Username,
			Password: opts.Password,
			PoolSize: opts.PoolSize,
			// -1 is none: a MOVED or ASK reply (the script did not run)
			// fails the call, and the slot map is reloaded in the
			// background, as a network error must never resend a charge.
			MaxRedirects: -1,
			MaxRetries:   -1,
			// Besides after every failed call, the slot map is re-read
			// once a second, so a failover is followed promptly.
			ClusterStateReloadInterval: time.Second,
			DialTimeout:                io,
			ReadTimeout:                io,
			WriteTimeout:               io,
			ContextTimeoutEnabled:      true,
		})
	case opts.SentinelMaster != "":
		c = goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:            opts.SentinelMaster,
			SentinelAddrs:         opts.SentinelAddrs,
			SentinelPassword:      opts.SentinelPassword,
			Username:              opts.Username,
			Password:              opts.Password,
			DB:                    opts.DB,
			PoolSize:              opts.PoolSize,
			MaxRetries:            -1,
			DialTimeout:           io,
			ReadTimeout:           io,
			WriteTimeout:          io,
			ContextTimeoutEnabled: true,
		})
	default:
		c = goredis.NewClient(&goredis.Options{
			Addr:                  opts.Addr,
			Username:              opts.Username,
			Password:              opts.Password,
			DB:                    opts.DB,
			PoolSize:              opts.PoolSize,
			MaxRetries:            -1,
			DialTimeout:           io,
			ReadTimeout:           io,
			WriteTimeout:          io,
			ContextTimeoutEnabled: true,
		})
	}
	s := New(c, opts)
	s.own = true
	return s, nil
}

// Describe names where opts reach Redis, for logs: "redis:HOST:PORT",
// "redis-cluster:A,B,C" or "redis-sentinel:MASTER@A,B,C".
func (o Options) Describe() string {
	switch {
	case len(o.ClusterAddrs) > 0:
		return "redis-cluster:" + strings.Join(o.ClusterAddrs, ",")
	case o.SentinelMaster != "":
		return "redis-sentinel:" + o.SentinelMaster + "@" + strings.Join(o.SentinelAddrs, ",")
	}
	return "redis:" + o.withDefaults().Addr
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

// Ping checks that the server answers within the Check deadline; on a
// Redis Cluster, that every primary does (a dead one is a shard whose
// subjects fall to the failure mode), so health tells of one shard's
// outage.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		return s.record(cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("primary %s: %w", c.Options().Addr, err)
			}
			return nil
		}), "ping every primary")
	}
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
	return s.recordSince(err, op, time.Now().UnixNano())
}

// recordSince is record for a call that started at start (unix ns): an
// error of a call that started before the last success is returned but
// does not make the store unhealthy, as a pipeline that its callers gave
// up on may fail long after newer calls succeeded.
func (s *Store) recordSince(err error, op string, start int64) error {
	s.calls.Add(1)
	if err != nil && !errors.Is(err, goredis.Nil) {
		s.errs.Add(1)
		if cc, ok := s.client.(*goredis.ClusterClient); ok && unavailable(err) {
			// A node that died sends no MOVED: only a reload of the slot
			// map (in the background, one at a time) finds its replica.
			cc.ReloadState(context.Background())
		}
		err = fmt.Errorf("store/redis: %s: %w", op, err)
		if start >= s.lastOK.Load() {
			s.lastErr.Store(&err)
		}
		return err
	}
	for ok := s.lastOK.Load(); start > ok && !s.lastOK.CompareAndSwap(ok, start); ok = s.lastOK.Load() {
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
