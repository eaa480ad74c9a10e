package redis

import (
	"context"
	"strconv"
	"sync"

	"github.com/quotagate/quotagate/engine"
)

// leaseTable holds the blocks of quota this replica reserved (leased
// mode). It is safe for concurrent use; its lock is never held across a
// round trip.
type leaseTable struct {
	block int64
	mu    sync.Mutex
	// m holds the blocks by counter key, which names its window, and by
	// balance key and grant period.
	m         map[string]*lease
	nextSweep int64 // unix ms; guarded by mu
}

// lease is one reserved block of one window counter or of one balance's
// allowance.
type lease struct {
	left int64 // reserved and not yet used
	// pending is set while a request of this replica reserves a new
	// block of it: the requests meanwhile are charged exactly instead of
	// each reserving one, so a replica holds at most one block unused.
	pending bool
	seen    int64 // the counter (or allowance) in Redis when last read
	// credits are the balance's credits in Redis when last read.
	credits int64
	end     int64 // when the window (and the block) ends, unix ms
}

// leaseSweepAt is the table size above which expired blocks are dropped,
// at most once per leaseSweepEvery milliseconds.
const (
	leaseSweepAt    = 4096
	leaseSweepEvery = 1000
)

func newLeaseTable(block int64) *leaseTable {
	return &leaseTable{block: block, m: make(map[string]*lease)}
}

// needsBalance reports whether p must read and charge a balance.
func needsBalance(p *engine.Plan) bool {
	b := &p.Balance
	return b.Owner != "" && !b.Unlimited && b.Cost > 0
}

// balanceLeaseKey names the block of p's balance in the current grant
// period; a new period is a new block.
func (s *Store) balanceLeaseKey(p *engine.Plan) string {
	return "b{" + p.Tag + "}:" + p.Balance.Owner + ":" + strconv.FormatInt(p.Balance.PeriodStart.UnixMilli(), 10)
}

// leasedCall is the state of one leased Charge between taking from the
// blocks and settling with Redis.
type leasedCall struct {
	p       *engine.Plan
	a       scriptArgs
	covered []bool // counter i was served from a block
	bkey    string // the balance's block key; "" when no balance is due
	bpaid   bool   // the cost was paid from the balance's block
}

// chargeLeased serves p from this replica's blocks when they cover every
// counter and the balance; otherwise it runs the script, charging what the
// blocks do not cover and reserving a new block for each fixed counter
// and, when the allowance covers the cost, for the balance. Sliding
// counters and credits are always charged exactly.
func (s *Store) chargeLeased(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	lc := &leasedCall{p: p, covered: make([]bool, len(p.Counters))}
	lc.a = scriptArgs{keys: windowIDs(p), amounts: make([]int64, len(p.Counters)), blocks: make([]int64, len(p.Counters))}
	if needsBalance(p) {
		lc.bkey = s.balanceLeaseKey(p)
	}
	lt := s.leases
	lt.mu.Lock()
	if lt.takeLocked(lc) {
		r := lt.cachedLocked(lc)
		lt.mu.Unlock()
		if p.Pending != nil {
			// No script ran: the record goes on its own, all its cost
			// taken from the allowance the blocks hold.
			if err := s.recordPending(ctx, p); err != nil {
				return engine.PlanResult{}, err
			}
		}
		return r, nil
	}
	lt.mu.Unlock()

	r, t, err := s.run(ctx, p, &lc.a)
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if err != nil {
		lt.undoLocked(lc, false)
		return r, err
	}
	if !r.Allowed {
		lt.undoLocked(lc, true)
	}
	lt.settleLocked(lc, &r, t)
	if now := p.Now.UnixMilli(); len(lt.m) > leaseSweepAt && now >= lt.nextSweep {
		lt.sweepLocked(now)
		lt.nextSweep = now + leaseSweepEvery
	}
	return r, nil
}

// takeLocked takes what lc's request needs from the blocks that cover it
// and sets lc.a for the rest. It reports whether the blocks covered all.
// The caller holds lt.mu.
func (lt *leaseTable) takeLocked(lc *leasedCall) bool {
	p, now := lc.p, lc.p.Now.UnixMilli()
	all := true
	for i := range p.Counters {
		pc := &p.Counters[i]
		l := lt.m[lc.a.keys[i]]
		if !pc.Sliding() && l != nil && l.end > now && l.left >= pc.Amount {
			l.left -= pc.Amount
			lc.covered[i] = true
			continue
		}
		all = false
		lc.a.amounts[i] = pc.Amount
		if pc.Sliding() {
			continue
		}
		if l == nil || l.end <= now {
			l = &lease{end: pc.End.UnixMilli()}
			lt.m[lc.a.keys[i]] = l
		}
		if !l.pending {
			l.pending, lc.a.blocks[i] = true, lt.block
		}
	}
	if lc.bkey == "" {
		return all
	}
	cost := p.Balance.Cost
	l := lt.m[lc.bkey]
	if l != nil && l.left >= cost {
		l.left -= cost
		lc.bpaid = true
		return all
	}
	lc.a.cost = cost
	if l == nil {
		end := now + leaseBalanceLife
		if !p.Balance.PeriodEnd.IsZero() {
			end = p.Balance.PeriodEnd.UnixMilli()
		}
		l = &lease{end: end}
		lt.m[lc.bkey] = l
	}
	if !l.pending {
		// The rest of the block goes back with the request, which
		// reserves a new one of about lt.block requests like this one.
		l.pending, lc.a.bblock = true, lt.block*cost
		lc.a.give, l.left = l.left, 0
	}
	return false
}

// cachedLocked is the result of a request the blocks covered entirely.
// The caller holds lt.mu.
func (lt *leaseTable) cachedLocked(lc *leasedCall) engine.PlanResult {
	n := len(lc.p.Counters)
	r := engine.PlanResult{Allowed: true, Refused: -1, Cached: true, Current: make([]int64, n), Previous: make([]int64, n)}
	for i := range n {
		l := lt.m[lc.a.keys[i]]
		r.Current[i] = max(l.seen-l.left, 0)
	}
	if lc.bkey != "" {
		l := lt.m[lc.bkey]
		r.Cached, r.Allowance, r.Credits = false, l.seen+l.left, l.credits
	}
	return r
}

// undoLocked gives back to the blocks what takeLocked took from them, for
// a request that was refused or whose outcome is unknown. The caller
// holds lt.mu.
func (lt *leaseTable) undoLocked(lc *leasedCall, refused bool) {
	for i := range lc.p.Counters {
		l := lt.m[lc.a.keys[i]]
		if l == nil {
			continue
		}
		if lc.covered[i] {
			l.left += lc.p.Counters[i].Amount
		}
		if lc.a.blocks[i] > 0 {
			l.pending = false
		}
	}
	if l := lt.m[lc.bkey]; lc.bkey != "" && l != nil {
		if lc.bpaid {
			l.left += lc.p.Balance.Cost
		}
		// A refusal wrote nothing, so the rest given back is still this
		// replica's; after an unknown outcome it may have gone back to
		// Redis, and is lost to this replica (refused early, never
		// over-admitted).
		if refused {
			l.left += lc.a.give
		}
		if lc.a.bblock > 0 {
			l.pending = false
		}
	}
}

// settleLocked records the blocks that the script reserved and what it
// read, and corrects r's usage for the blocks this replica holds unused.
// The caller holds lt.mu.
func (lt *leaseTable) settleLocked(lc *leasedCall, r *engine.PlanResult, t taken) {
	p := lc.p
	for i := range p.Counters {
		l := lt.m[lc.a.keys[i]]
		if l == nil {
			continue
		}
		if lc.a.blocks[i] > 0 {
			l.pending = false
		}
		if r.Allowed && !lc.covered[i] {
			l.left += t.counters[i] - lc.a.amounts[i]
		}
		l.seen = max(l.seen, r.Current[i])
		// What this replica holds unused is not usage: the engine's
		// cache must not refuse what the block would admit.
		r.Current[i] = max(l.seen-l.left, 0)
	}
	l := lt.m[lc.bkey]
	if lc.bkey == "" || l == nil {
		return
	}
	if r.Allowed {
		l.left += t.balance - lc.a.cost
	}
	if lc.a.bblock > 0 {
		l.pending = false
	}
	l.seen, l.credits = r.Allowance, r.Credits
	r.Allowance += l.left
}

// leaseBalanceLife is how long a balance's block is kept when its grant
// period's end is unknown, in milliseconds; the key names the period, so
// this only bounds the table.
const leaseBalanceLife = 3_600_000

// sweepLocked drops the blocks of windows that ended. The caller holds
// lt.mu.
func (lt *leaseTable) sweepLocked(now int64) {
	for k, l := range lt.m {
		if l.end <= now {
			delete(lt.m, k)
		}
	}
}
