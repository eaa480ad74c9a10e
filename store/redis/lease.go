package redis

import (
	"context"
	"sync"

	"github.com/quotagate/quotagate/engine"
)

// leaseTable holds the blocks of quota this replica reserved (leased
// mode). It is safe for concurrent use; its lock is never held across a
// round trip.
type leaseTable struct {
	block int64
	mu    sync.Mutex
	m     map[string]*lease // by counter key, which names its window
}

// lease is one reserved block of one window counter.
type lease struct {
	left int64 // reserved and not yet used
	seen int64 // the counter in Redis when last read
	end  int64 // when the window (and the block) ends, unix ms
}

// leaseSweepAt is the table size above which expired blocks are dropped.
const leaseSweepAt = 4096

func newLeaseTable(block int64) *leaseTable {
	return &leaseTable{block: block, m: make(map[string]*lease)}
}

// needsBalance reports whether p must read and charge a balance, which is
// never leased: balances stay exact and never go negative.
func needsBalance(p *engine.Plan) bool {
	b := &p.Balance
	return b.Owner != "" && !b.Unlimited && b.Cost > 0
}

// chargeLeased serves p from this replica's blocks when they cover every
// counter and no balance is due; otherwise it runs the script, charging
// the counters the blocks do not cover and reserving a new block for each
// fixed one. Sliding counters are always charged exactly.
func (s *Store) chargeLeased(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	n := len(p.Counters)
	keys := s.keys(p)
	amounts, blocks := make([]int64, n), make([]int64, n)
	covered := make([]bool, n)
	now := p.Now.UnixMilli()
	lt := s.leases
	lt.mu.Lock()
	all := true
	for i := range p.Counters {
		pc := &p.Counters[i]
		if l := lt.m[keys[i]]; !pc.Sliding() && l != nil && l.end > now && l.left >= pc.Amount {
			l.left -= pc.Amount
			covered[i] = true
			continue
		}
		amounts[i] = pc.Amount
		if !pc.Sliding() {
			blocks[i] = lt.block
		}
		all = false
	}
	if all && !needsBalance(p) {
		r := engine.PlanResult{Allowed: true, Refused: -1, Cached: true, Current: make([]int64, n), Previous: make([]int64, n)}
		for i := range n {
			l := lt.m[keys[i]]
			r.Current[i] = max(l.seen-l.left, 0)
		}
		lt.mu.Unlock()
		return r, nil
	}
	lt.mu.Unlock()

	r, took, err := s.run(ctx, p, keys, amounts, blocks, false)
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if err != nil || !r.Allowed {
		for i := range n {
			if covered[i] {
				lt.m[keys[i]].left += p.Counters[i].Amount
			}
		}
		if err != nil {
			return r, err
		}
	}
	for i := range n {
		l := lt.m[keys[i]]
		if l == nil && r.Allowed && blocks[i] > 0 {
			l = &lease{end: p.Counters[i].End.UnixMilli()}
			lt.m[keys[i]] = l
		}
		if l == nil {
			continue
		}
		if r.Allowed && !covered[i] {
			l.left += took[i] - amounts[i]
		}
		l.seen = max(l.seen, r.Current[i])
		// What this replica holds unused is not usage: the engine's
		// cache must not refuse what the block would admit.
		r.Current[i] = max(l.seen-l.left, 0)
	}
	if len(lt.m) > leaseSweepAt {
		lt.sweepLocked(now)
	}
	return r, nil
}

// sweepLocked drops the blocks of windows that ended. The caller holds
// lt.mu.
func (lt *leaseTable) sweepLocked(now int64) {
	for k, l := range lt.m {
		if l.end <= now {
			delete(lt.m, k)
		}
	}
}
