package engine

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults of Config.PendingSize and Config.PendingMaxAge.
const (
	defaultPendingSize   = 100_000
	defaultPendingMaxAge = 15 * time.Minute
)

// PendingStats are the pending-decision table's counters.
type PendingStats struct {
	// Held is how many decisions wait for their settlement.
	Held int
	// AgedOut and Evicted count the pending decisions dropped unsettled,
	// for their age (PendingMaxAge) or for the table's size (PendingSize).
	AgedOut, Evicted uint64
}

// shardPend is Engine.pendOf's entry for one shard, padded so that two
// shards' lists never share a cache line.
type shardPend struct {
	ids []uuid.UUID
	_   [40]byte
}

// pendingShards is how many independently locked parts the table has;
// a decision's part is picked by random bits of its id.
const pendingShards = 16

// pendingTable holds the pending decisions, bounded by a size and an
// age. It is safe for concurrent use; its locks are leaves: nothing else
// is locked while one is held, but a shard lock may be held when one is
// taken.
type pendingTable struct {
	parts   [pendingShards]pendingPart
	size    int   // per part
	maxAge  int64 // ns
	tracked bool  // changes are recorded for a PendingStore
	agedOut atomic.Uint64
	evicted atomic.Uint64
}

// pendingPart is one locked part of the table: records in a slab with a
// free list, found by id, dropped in the order of the queue.
type pendingPart struct {
	mu    sync.Mutex
	byID  pendingIndex
	count int // records in the slab (open, claimed or settled)
	recs  pendingSlab
	free  []int32
	queue pendingQueue
	held  int
	// dropped is the latest decision time (unix ns) of a dropped record:
	// an unknown id decided before it may have been dropped (aged out).
	dropped int64
	// changed lists the ids whose record changed since the last flush
	// (only when the table is tracked).
	changed []uuid.UUID
	_       [64]byte
}

// pendingRec is one record in memory: about 250 bytes, with its index
// and queue slots about 320 (BenchmarkPendingMemory).
type pendingRec struct {
	id                         uuid.UUID
	state                      PendingState
	at, expires                int64
	subject, team, owner       string
	tier                       Tier
	action, workflow           string
	units, charged             int64
	fromAllowance, fromCredits int64
	grantStart                 int64
	windows                    []PendingWindow
	trace                      TraceRef
}

// queued is a queue slot: the record at idx, valid while that record
// still has id and expires (a settled record is queued again).
type queued struct {
	id      uuid.UUID
	expires int64
	idx     int32
}

// pendingQueue is a growable ring of queue slots.
type pendingQueue struct {
	buf        []queued
	head, size int
}

func (q *pendingQueue) push(x queued) {
	if q.size == len(q.buf) {
		nb := make([]queued, max(16, 2*len(q.buf)))
		for i := range q.size {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = x
	q.size++
}

func (q *pendingQueue) peek() *queued { return &q.buf[q.head] }

func (q *pendingQueue) pop() {
	q.buf[q.head] = queued{}
	q.head = (q.head + 1) % len(q.buf)
	q.size--
}

func newPendingTable(size int, maxAge time.Duration, tracked bool) *pendingTable {
	t := &pendingTable{size: max(1, (size+pendingShards-1)/pendingShards), maxAge: int64(maxAge), tracked: tracked}
	for i := range t.parts {
		t.parts[i].byID.init(t.size)
	}
	return t
}

// part returns the part of id, picked by its last random bits.
func (t *pendingTable) part(id uuid.UUID) *pendingPart {
	return &t.parts[id[15]%pendingShards]
}

// put records r (open), dropping aged-out records and, when the part is
// full, the oldest one. It reports the slot it used.
func (t *pendingTable) put(r *pendingRec, now int64) {
	p := t.part(r.id)
	p.mu.Lock()
	t.expireLocked(p, now)
	if p.count >= t.size {
		t.dropOldestLocked(p)
	}
	var idx int32
	if n := len(p.free); n > 0 {
		idx = p.free[n-1]
		p.free = p.free[:n-1]
		*p.recs.at(idx) = *r
	} else {
		idx = p.recs.add(r)
	}
	p.byID.insert(r.id, idx)
	p.count++
	if r.state == PendingOpen {
		p.held++
	}
	p.queue.push(queued{id: r.id, expires: r.expires, idx: idx})
	p.mu.Unlock()
}

// has reports whether the table holds id.
func (t *pendingTable) has(id uuid.UUID) bool {
	p := t.part(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.byID.find(id, &p.recs)
	return ok
}

// expireLocked drops the records whose time is over, from the front of
// the queue. The caller holds p.mu.
func (t *pendingTable) expireLocked(p *pendingPart, now int64) {
	for p.queue.size > 0 {
		q := p.queue.peek()
		if q.expires > now {
			return
		}
		t.dropSlotLocked(p, *q, &t.agedOut)
	}
}

// dropOldestLocked drops the record at the front of the queue, for the
// part's size. The caller holds p.mu.
func (t *pendingTable) dropOldestLocked(p *pendingPart) {
	for p.queue.size > 0 && p.count >= t.size {
		t.dropSlotLocked(p, *p.queue.peek(), &t.evicted)
	}
}

// dropSlotLocked pops the front slot q and drops its record if the slot
// is still its, counting an open record in counter. The caller holds p.mu.
func (t *pendingTable) dropSlotLocked(p *pendingPart, q queued, counter *atomic.Uint64) {
	p.queue.pop()
	idx, ok := p.byID.find(q.id, &p.recs)
	if !ok || idx != q.idx || p.recs.at(idx).expires != q.expires {
		return // stale: the record was settled and queued again, or dropped
	}
	r := p.recs.at(idx)
	if r.state == PendingOpen {
		counter.Add(1)
		p.held--
	}
	p.dropped = max(p.dropped, r.at)
	t.removeLocked(p, idx)
}

// removeLocked frees the slot idx. The caller holds p.mu.
func (t *pendingTable) removeLocked(p *pendingPart, idx int32) {
	id := p.recs.at(idx).id
	p.byID.remove(id, &p.recs)
	p.count--
	*p.recs.at(idx) = pendingRec{}
	p.free = append(p.free, idx)
	if t.tracked {
		p.changed = append(p.changed, id)
	}
}

// claim looks id up for settlement at now. An open record is taken out
// of the table's count and returned (ok) for the caller to apply and then
// finish with settled or unclaim; anything else is an outcome.
func (t *pendingTable) claim(id uuid.UUID, now int64) (r pendingRec, out SettleOutcome, ok bool) {
	p := t.part(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	t.expireLocked(p, now)
	idx, found := p.byID.find(id, &p.recs)
	switch {
	case found && p.recs.at(idx).state != PendingOpen:
		return pendingRec{}, SettleDuplicate, false
	case found && p.recs.at(idx).expires <= now: // out of the queue's order
		t.agedOut.Add(1)
		p.held--
		p.dropped = max(p.dropped, p.recs.at(idx).at)
		t.removeLocked(p, idx)
		return pendingRec{}, SettleAgedOut, false
	case found:
		rec := p.recs.at(idx)
		rec.state = pendingClaimed
		p.held--
		return *rec, 0, true
	case p.dropped > 0 && id.Version() == 7 && idTime(id) <= p.dropped:
		return pendingRec{}, SettleAgedOut, false
	}
	return pendingRec{}, SettleUnmatched, false
}

// pendingClaimed marks a record being settled (never stored: a store sees
// it open until it is settled).
const pendingClaimed PendingState = 255

// settled marks the claimed record id as settled at now, remembered for
// the table's maximum age. With coupled set the caller holds the lock of
// the shard whose state the settlement changed, and records the change
// there (shard.pend), so that a flush saves the mark with that state;
// else the change is the table's own.
func (t *pendingTable) settled(id uuid.UUID, now int64, coupled bool) {
	p := t.part(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	idx, found := p.byID.find(id, &p.recs)
	if !found {
		return
	}
	r := p.recs.at(idx)
	r.state, r.expires = PendingSettled, now+t.maxAge
	// What a duplicate needs is the id: the rest goes.
	r.subject, r.team, r.owner, r.tier, r.action, r.workflow, r.windows = "", "", "", "", "", "", nil
	p.queue.push(queued{id: id, expires: r.expires, idx: idx})
	if t.tracked && !coupled {
		p.changed = append(p.changed, id)
	}
}

// unclaim puts a claimed record back: its settlement could not be applied.
func (t *pendingTable) unclaim(id uuid.UUID) {
	p := t.part(id)
	p.mu.Lock()
	if idx, found := p.byID.find(id, &p.recs); found && p.recs.at(idx).state == pendingClaimed {
		p.recs.at(idx).state = PendingOpen
		p.held++
	}
	p.mu.Unlock()
}

// stats drops what aged out by now and returns the table's counters.
func (t *pendingTable) stats(now int64) PendingStats {
	var s PendingStats
	for i := range t.parts {
		p := &t.parts[i]
		p.mu.Lock()
		t.expireLocked(p, now)
		s.Held += p.held
		p.mu.Unlock()
	}
	s.AgedOut, s.Evicted = t.agedOut.Load(), t.evicted.Load()
	return s
}

// idTime returns the time (unix ns, millisecond precision) of a UUIDv7.
func idTime(id uuid.UUID) int64 {
	ms := binary.BigEndian.Uint64(id[0:8]) >> 16
	if ms > uint64(1<<63-1)/uint64(time.Millisecond) {
		return 1<<63 - 1
	}
	return int64(ms) * int64(time.Millisecond)
}

// recordsOf appends to out the current records of ids (a dropped one as
// PendingDropped), for a PendingStore.
func (t *pendingTable) recordsOf(out []PendingRecord, ids []uuid.UUID) []PendingRecord {
	for _, id := range ids {
		p := t.part(id)
		p.mu.Lock()
		if idx, ok := p.byID.find(id, &p.recs); ok {
			out = append(out, p.recs.at(idx).record())
		} else {
			out = append(out, PendingRecord{ID: id, State: PendingDropped})
		}
		p.mu.Unlock()
	}
	return out
}

// takeChanges appends to out the records whose change is the table's own
// (drops, and settlements that changed no state) since the last call, for
// a PendingStore. It steps pace after each part.
func (t *pendingTable) takeChanges(out []PendingRecord, pace *Pacer) []PendingRecord {
	for i := range t.parts {
		p := &t.parts[i]
		p.mu.Lock()
		if len(p.changed) == 0 {
			p.mu.Unlock()
			continue
		}
		seen := make(map[uuid.UUID]bool, len(p.changed))
		for _, id := range p.changed {
			if seen[id] {
				continue
			}
			seen[id] = true
			idx, ok := p.byID.find(id, &p.recs)
			if !ok {
				out = append(out, PendingRecord{ID: id, State: PendingDropped})
				continue
			}
			out = append(out, p.recs.at(idx).record())
		}
		p.changed = p.changed[:0]
		p.mu.Unlock()
		pace.Step()
	}
	return out
}

// requeue marks recs as changed again after a failed save.
func (t *pendingTable) requeue(recs []PendingRecord) {
	for i := range recs {
		p := t.part(recs[i].ID)
		p.mu.Lock()
		p.changed = append(p.changed, recs[i].ID)
		p.mu.Unlock()
	}
}
