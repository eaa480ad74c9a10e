package engine

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors callers branch on.
var (
	ErrUnknownTier    = errors.New("engine: unknown tier")
	ErrInvalidConfig  = errors.New("engine: invalid config")
	ErrTooManyLimits  = errors.New("engine: too many limits for one request")
	ErrUnknownSubject = errors.New("engine: unknown subject")
	ErrClosed         = errors.New("engine: closed")
	// ErrNegativeBalance is returned by AddCredits when the credits would
	// fall below zero.
	ErrNegativeBalance = errors.New("engine: balance would go negative")
)

// Engine decides and charges requests. It is safe for concurrent use.
type Engine struct {
	rules  atomic.Pointer[ruleset]
	shards []shard
	mask   uint64
	seed   maphash.Seed
	// Fixed at New from Options; Reload does not change them.
	store      Store
	auth       Authority
	events     Events
	log        *slog.Logger
	now        func() time.Time
	syncWrites bool
	deferrer   Deferrer
	// pendDeferrer is deferrer when it takes pending records too.
	pendDeferrer PendingDeferrer
	flushEvery   time.Duration
	// observeStore, if set, is told of every Store call (storecalls.go).
	observeStore StoreObserver

	cap     capacity
	pending *pendingTable
	// pendOf[i] lists the pending decisions recorded or settled with a
	// change to a state of shard i since the last flush (only for a
	// PendingStore), so that Flush saves each with that state's snapshot.
	// It is guarded by shard i's lock.
	pendOf []shardPend
	// flushMu makes flushes one at a time: pending records, unlike
	// snapshots, carry no version, so an older flush must not land last.
	flushMu                           sync.Mutex
	loads, storeErrors, eventsEmitted atomic.Uint64
}

// minShardCapacity lets a subject and its team share a shard's LRU
// without one evicting the other.
const minShardCapacity = 2

// New returns an Engine that decides by r, wired as o says. It starts no
// goroutines; call Run for periodic flushing.
func New(r Rules, o Options) (*Engine, error) {
	// The default in-memory store dies with the engine: keeping pending
	// records in it would cost every flush for nothing.
	_, tracked := o.Store.(PendingStore)
	r, o = r.withDefaults(), o.withDefaults()
	if err := errors.Join(r.Validate(), o.Validate()); err != nil {
		return nil, err
	}
	e := &Engine{
		shards:       make([]shard, o.Shards),
		mask:         uint64(o.Shards - 1),
		seed:         maphash.MakeSeed(),
		store:        o.Store,
		auth:         o.Authority,
		events:       o.Events,
		log:          o.Logger,
		now:          o.Now,
		syncWrites:   o.SyncWrites,
		deferrer:     o.Deferrer,
		observeStore: o.StoreObserver,
		flushEvery:   o.FlushInterval,
	}
	per := max(o.CacheSize/o.Shards, minShardCapacity)
	forgets := e.forgetter() != nil // only then are idle states dropped
	for i := range e.shards {
		if err := e.shards[i].init(per); err != nil {
			return nil, err
		}
		e.shards[i].idle, e.shards[i].forgets = e.idleAt, forgets
	}
	e.pendDeferrer, _ = o.Deferrer.(PendingDeferrer)
	e.pending = newPendingTable(o.PendingSize, o.PendingMaxAge, tracked)
	if tracked {
		e.pendOf = make([]shardPend, len(e.shards))
	}
	e.cap.refresh = utilRefresh
	e.cap.rps.Store(math.Float64bits(r.Capacity.RequestsPerSecond))
	e.cap.factor.Store(math.Float64bits(r.Capacity.Factor))
	e.rules.Store(compile(r))
	return e, nil
}

// Reload validates r, compiles it and swaps it in whole: the next request
// sees the new tiers, limits and prices, applied to the usage counted so
// far (limits are matched by name; a limit whose period changes starts a
// fresh window when its current one ends). A request already being decided
// finishes under the rules it started with. The Options given to New are
// not part of r and do not change. The capacity and factor change only if
// r changes them, so a reload does not undo SetCapacity or
// SetCapacityFactor. A refused r changes nothing.
func (e *Engine) Reload(r Rules) error {
	r = r.withDefaults()
	if err := r.Validate(); err != nil {
		return err
	}
	rs := compile(r)
	if err := e.moveTags(context.Background(), e.rules.Load(), rs); err != nil {
		return err
	}
	old := e.rules.Swap(rs)
	if r.Capacity.RequestsPerSecond != old.rules.Capacity.RequestsPerSecond {
		e.cap.rps.Store(math.Float64bits(r.Capacity.RequestsPerSecond))
		e.cap.utilAt.Store(0)
	}
	if r.Capacity.Factor != old.rules.Capacity.Factor {
		e.cap.factor.Store(math.Float64bits(r.Capacity.Factor))
	}
	return nil
}

// Rules returns the current Rules, with defaults applied. They must not be
// modified.
func (e *Engine) Rules() Rules { return e.rules.Load().rules }

// Stats are the engine's cache and store counters.
type Stats struct {
	Shards, Subjects int
	// Hits and Misses count state lookups in the cache (a revival from the
	// pending saves is a hit); Loads counts Store.Load calls.
	Hits, Misses, Evictions, Loads, StoreErrors, EventsEmitted uint64
}

// Stats returns the current counters. It briefly locks every shard.
func (e *Engine) Stats() Stats {
	s := Stats{Shards: len(e.shards), Loads: e.loads.Load(), StoreErrors: e.storeErrors.Load(),
		EventsEmitted: e.eventsEmitted.Load()}
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		s.Subjects += sh.lru.Len()
		s.Hits += sh.hits
		s.Misses += sh.misses
		s.Evictions += sh.evictions
		sh.mu.Unlock()
	}
	return s
}
