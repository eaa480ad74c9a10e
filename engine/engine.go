package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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
	// Fixed at New; Reload does not change them.
	store      Store
	auth       Authority
	events     Events
	log        *slog.Logger
	now        func() time.Time
	syncWrites bool
	flushEvery time.Duration
	base       Config

	pend                              pendingSet
	cap                               capacity
	loads, storeErrors, eventsEmitted atomic.Uint64
}

// minShardCapacity lets a subject and its team share a shard's LRU
// without one evicting the other.
const minShardCapacity = 2

// New returns an Engine for cfg. It starts no goroutines; call Run for
// periodic flushing.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	rs, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		shards:     make([]shard, cfg.Shards),
		mask:       uint64(cfg.Shards - 1),
		seed:       maphash.MakeSeed(),
		store:      cfg.Store,
		auth:       cfg.Authority,
		events:     cfg.Events,
		log:        cfg.Logger,
		now:        cfg.Now,
		syncWrites: cfg.SyncWrites,
		flushEvery: cfg.FlushInterval,
		base:       cfg,
	}
	per := max(cfg.CacheSize/cfg.Shards, minShardCapacity)
	forgets := e.forgetter() != nil // only then are idle states dropped
	for i := range e.shards {
		if err := e.shards[i].init(per); err != nil {
			return nil, err
		}
		e.shards[i].idle, e.shards[i].forgets = e.idleAt, forgets
	}
	e.pend.init(cfg.PendingSize, cfg.PendingMaxAge)
	e.cap.refresh = utilRefresh
	e.cap.rps.Store(math.Float64bits(cfg.Capacity.RequestsPerSecond))
	e.cap.factor.Store(math.Float64bits(cfg.Capacity.Factor))
	e.rules.Store(rs)
	return e, nil
}

func maphashString(seed maphash.Seed, s string) uint64 { return maphash.String(seed, s) }

// Reload validates cfg, compiles it and swaps it in whole: the next request
// sees the new tiers, limits and prices, applied to the usage counted so
// far (limits are matched by name; a limit whose period changes starts a
// fresh window when its current one ends). Store, Authority, Events, Now,
// Shards, CacheSize, SyncWrites and FlushInterval keep their values from
// New. The capacity
// and factor change only if cfg changes them, so a reload does not undo
// SetCapacity or SetCapacityFactor.
func (e *Engine) Reload(cfg Config) error {
	cfg.Store, cfg.Events, cfg.Now = e.base.Store, e.base.Events, e.base.Now
	cfg.Logger = e.base.Logger
	cfg.Authority = e.base.Authority
	cfg.Shards, cfg.CacheSize = e.base.Shards, e.base.CacheSize
	cfg.SyncWrites, cfg.FlushInterval = e.base.SyncWrites, e.base.FlushInterval
	cfg.PendingSize, cfg.PendingMaxAge = e.base.PendingSize, e.base.PendingMaxAge
	cfg = cfg.withDefaults()
	rs, err := compile(cfg)
	if err != nil {
		return err
	}
	if err := e.moveTags(context.Background(), e.rules.Load(), rs); err != nil {
		return err
	}
	old := e.rules.Swap(rs)
	if cfg.Capacity.RequestsPerSecond != old.cfg.Capacity.RequestsPerSecond {
		e.cap.rps.Store(math.Float64bits(cfg.Capacity.RequestsPerSecond))
		e.cap.utilAt.Store(0)
	}
	if cfg.Capacity.Factor != old.cfg.Capacity.Factor {
		e.cap.factor.Store(math.Float64bits(cfg.Capacity.Factor))
	}
	return nil
}

// Config returns the current ruleset's Config, with defaults applied. It
// must not be modified.
func (e *Engine) Config() Config { return e.rules.Load().cfg }

// Charge decides req at cfg.Now() and, when the decision carries a Delay,
// waits it out (without holding any lock) before returning. An error means
// no decision could be made; the Decision then still carries the tier and
// its FailureMode. If ctx ends during the wait, Charge returns the
// decision with an error wrapping ctx.Err(); the reservation stays charged,
// which errs toward the caller's quota rather than the system's.
func (e *Engine) Charge(ctx context.Context, req Request) (d Decision, err error) {
	// d is filled in place: a Decision is large, and copying it twice per
	// request costs more than the decision itself.
	if err = e.decide(ctx, e.now(), &req, &d); err != nil || d.Delay <= 0 {
		return
	}
	t := time.NewTimer(d.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		err = fmt.Errorf("engine: wait %s for the reservation of %q: %w", d.Delay, req.Subject, ctx.Err())
	}
	return
}

// ChargeAt decides req at now without waiting: an admitted request with a
// Delay must not proceed before now+Delay.
func (e *Engine) ChargeAt(ctx context.Context, now time.Time, req Request) (d Decision, err error) {
	err = e.decide(ctx, now, &req, &d)
	return
}

// decide decides req at now into d, which must be the zero Decision. An
// error that no outage caused (a request that would meet more limits than
// one charge can hold) sets d's FailureMode to FailClosed: a tier's
// fail-open covers a store or authority that cannot answer, never a
// request that cannot be metered.
func (e *Engine) decide(ctx context.Context, now time.Time, req *Request, d *Decision) error {
	err := e.decideOnce(ctx, now, req, d)
	if err != nil && errors.Is(err, ErrTooManyLimits) {
		d.FailureMode = FailClosed
	}
	return err
}

// decideOnce is decide without the failure-mode rule for errors.
func (e *Engine) decideOnce(ctx context.Context, now time.Time, req *Request, d *Decision) error {
	rs := e.rules.Load()
	d.ID = newDecisionID(now)
	unknown := rs.screenAction(req)
	d.Subject, d.Action, d.Workflow, d.Units = req.Subject, req.Action, req.Workflow, req.Units
	c := charge{e: e, rs: rs, req: *req, now: now.UnixNano(), factor: e.cap.factorValue()}
	c.prepare()
	d.FailureMode, d.Priority = c.static.failure, c.static.priority
	if req.Subject == "" {
		// No identity, no tier: a 401 names none (in headers, body,
		// metadata, logs and spans), as it does not know who asked.
		d.deny(ReasonNoIdentity, rs.msgs.NoIdentity)
		return nil
	}
	d.Tier = c.static.name
	if strings.HasPrefix(req.Subject, teamKeyPrefix) {
		d.deny(ReasonUnknownSubject, rs.msgs.UnknownSubject)
		return nil
	}
	if unknown != "" {
		d.UnknownAction = unknown
		if rs.cfg.UnknownActions.Mode == UnknownActionDeny {
			// The client chose the name, or it is a typo: neither is
			// recorded as an action (metrics and the ledger stay bounded).
			d.Action = ""
			d.deny(ReasonUnknownAction, rs.msgs.UnknownAction)
			return nil
		}
	}
	known := !rs.cfg.DenyUnknown || rs.known(&c.req)
	if err := e.acquire(ctx, rs, &c.req, c.user, known, &c.h); err != nil {
		return err
	}
	if c.h.st == nil || (!known && c.h.st.prof == nil) {
		if c.h.st != nil {
			e.release(ctx, c.h.si, c.h.ti)
		}
		d.deny(ReasonUnknownSubject, rs.msgs.UnknownSubject)
		return nil
	}
	if e.auth != nil {
		err := c.decideRemote(ctx, d)
		if c.badProfile != nil {
			e.logBadProfile(req.Subject, c.badProfile)
		}
		return err
	}
	c.lims = &e.shards[c.h.si].scratch
	err := c.decideLocked(d)
	var snaps []Snapshot
	var pend *pendingDecision
	if err == nil {
		snaps = c.finishLocked(nil)
		pend = c.pendingLocked(d)
	}
	e.release(ctx, c.h.si, c.h.ti)
	if pend != nil {
		e.pend.add(pend)
	}
	c.emit()
	if c.badProfile != nil {
		e.logBadProfile(req.Subject, c.badProfile)
	}
	if err != nil {
		return err
	}
	return c.syncSave(ctx, snaps)
}

// release unlocks the shards si and ti (ti < 0: none) and saves what
// evictions queued on them while they were locked.
func (e *Engine) release(ctx context.Context, si, ti int) {
	q1 := e.shards[si].takeQueuedLocked()
	var q2 []queuedSave
	if ti >= 0 && ti != si {
		q2 = e.shards[ti].takeQueuedLocked()
	}
	e.unlockPair(si, ti)
	e.saveQueued(ctx, &e.shards[si], q1)
	if ti >= 0 && ti != si {
		e.saveQueued(ctx, &e.shards[ti], q2)
	}
}

// newDecisionID returns a UUIDv7 for a decision made at now: 48 bits of
// Unix milliseconds, 12 bits of sub-millisecond time and 62 random bits
// from the runtime's per-thread ChaCha8 generator, which takes no lock and
// does not allocate.
func newDecisionID(now time.Time) uuid.UUID {
	var id uuid.UUID
	ms := uint64(now.UnixMilli())
	sub := uint64(now.Nanosecond()%1_000_000) * 4096 / 1_000_000
	binary.BigEndian.PutUint64(id[0:8], ms<<16|0x7000|sub)
	binary.BigEndian.PutUint64(id[8:16], rand.Uint64())
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

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
