package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
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

// PendingState is the state of a PendingRecord.
type PendingState uint8

const (
	// PendingOpen: the decision waits for its settlement.
	PendingOpen PendingState = iota
	// PendingSettled: the decision was settled; the record remembers its
	// id until Expires, so that a resent entry is a duplicate.
	PendingSettled
	// PendingDropped: the record was dropped (aged out or evicted); a
	// store deletes it.
	PendingDropped
)

// PendingRecord is a pending decision, or the mark of a settled one, as
// a PendingStore keeps it.
type PendingRecord struct {
	ID    uuid.UUID
	State PendingState
	// Tag is the hash tag of the owner's keys in a shared Authority
	// (Plan.Tag); empty in a local engine.
	Tag string
	// DecidedAt is the decision's time; Expires when the record is
	// dropped (DecidedAt + PendingMaxAge while open, the settlement's
	// time + PendingMaxAge once settled).
	DecidedAt, Expires time.Time
	// Owner is the balance owner's key: the subject or "team:<name>".
	Subject, Team, Owner string
	Tier                 Tier
	Action, Workflow     string
	Units, Charged       int64
	// FromAllowance and FromCredits are what the charge took from the
	// owner's allowance (of the grant period starting at GrantStart) and
	// credits.
	FromAllowance, FromCredits int64
	GrantStart                 time.Time
	// Windows are the window counts to give back on a refund, recorded
	// when the action's rule refunds windows.
	Windows []PendingWindow
	Trace   TraceRef
}

// PendingWindow is one window count charged by a pending decision.
type PendingWindow struct {
	// Owner is the subject or "team:<name>"; Limit the limit's name.
	Owner, Limit string
	// Start is the start of the window that was charged.
	Start  time.Time
	Amount int64
}

// PendingStore is implemented by a Store that keeps pending decisions and
// settled ids across restarts (store/sqlite, MemoryStore). The engine
// hands it the records that changed with the snapshots of each Flush, and
// with the snapshots of each charge under SyncWrites, so that a record is
// committed together with the state its charge changed.
type PendingStore interface {
	// SavePending saves snaps as Save does, and recs, atomically: an open
	// or settled record replaces the one of its id, except that an open
	// one never replaces a settled one (saves may land out of order), and
	// a dropped one deletes it; records that expire at or before now are
	// deleted.
	SavePending(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now time.Time) error
	// LoadPending returns the records that expire after now.
	LoadPending(ctx context.Context, now time.Time) ([]PendingRecord, error)
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

// pendingRec is one record in memory: about 250 bytes, with the map
// entry and queue slots about 330 (see PendingStats).
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

// pendingSlab holds records in chunks, so that growing it never copies
// the records it holds.
type pendingSlab struct {
	chunks [][]pendingRec
	n      int32
}

const pendingChunk = 256

func (s *pendingSlab) at(i int32) *pendingRec { return &s.chunks[i/pendingChunk][i%pendingChunk] }

// add appends r and returns its index.
func (s *pendingSlab) add(r *pendingRec) int32 {
	if int(s.n/pendingChunk) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]pendingRec, pendingChunk))
	}
	i := s.n
	*s.at(i) = *r
	s.n++
	return i
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
// a PendingStore.
func (t *pendingTable) takeChanges(out []PendingRecord) []PendingRecord {
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

// record returns r as a PendingRecord. A claimed record is open.
func (r *pendingRec) record() PendingRecord {
	pr := PendingRecord{ID: r.id, State: r.state, DecidedAt: time.Unix(0, r.at).UTC(), Expires: time.Unix(0, r.expires).UTC(),
		Subject: r.subject, Team: r.team, Owner: r.owner, Tier: r.tier, Action: r.action, Workflow: r.workflow,
		Units: r.units, Charged: r.charged, FromAllowance: r.fromAllowance, FromCredits: r.fromCredits,
		Windows: r.windows, Trace: r.trace}
	if r.grantStart != 0 {
		pr.GrantStart = time.Unix(0, r.grantStart).UTC()
	}
	if pr.State == pendingClaimed {
		pr.State = PendingOpen
	}
	return pr
}

// recFromRecord is the inverse of record, for records a store returned.
func recFromRecord(pr *PendingRecord) pendingRec {
	r := pendingRec{id: pr.ID, state: pr.State, at: pr.DecidedAt.UnixNano(), expires: pr.Expires.UnixNano(),
		subject: pr.Subject, team: pr.Team, owner: pr.Owner, tier: pr.Tier, action: pr.Action, workflow: pr.Workflow,
		units: pr.Units, charged: pr.Charged, fromAllowance: pr.FromAllowance, fromCredits: pr.FromCredits,
		windows: pr.Windows, trace: pr.Trace}
	if !pr.GrantStart.IsZero() {
		r.grantStart = pr.GrantStart.UnixNano()
	}
	return r
}

// PendingStats returns the pending-decision table's counters, after
// dropping the decisions that aged out by the engine's clock. It briefly
// locks each part of the table.
func (e *Engine) PendingStats() PendingStats { return e.pending.stats(e.now().UnixNano()) }

// RestorePending loads the pending decisions and settled ids that the
// Store (a PendingStore) kept, so that decisions made before a restart
// can be settled after it, exactly once. Call it once after New, before
// serving; it does nothing for a Store that keeps none. Records that
// expired meanwhile are not loaded; at most PendingSize are.
func (e *Engine) RestorePending(ctx context.Context) (int, error) {
	ps, ok := e.store.(PendingStore)
	if !ok {
		return 0, nil
	}
	now := e.now().UnixNano()
	recs, err := ps.LoadPending(ctx, time.Unix(0, now))
	if err != nil {
		return 0, err
	}
	// The table drops records in the order they were put.
	slices.SortFunc(recs, func(a, b PendingRecord) int { return a.Expires.Compare(b.Expires) })
	n := 0
	for i := range recs {
		if recs[i].State != PendingOpen && recs[i].State != PendingSettled {
			continue
		}
		r := recFromRecord(&recs[i])
		if r.expires <= now || e.pending.has(r.id) {
			continue
		}
		e.pending.put(&r, now)
		n++
	}
	return n, nil
}

var _ PendingStore = (*MemoryStore)(nil)

// SavePending saves snaps as Save does and applies recs (see
// PendingStore), under one lock.
func (m *MemoryStore) SavePending(ctx context.Context, snaps []Snapshot, recs []PendingRecord, now time.Time) error {
	for i := range recs {
		if recs[i].ID == uuid.Nil {
			return fmt.Errorf("engine: save pending record %d of %d: the id is empty", i+1, len(recs))
		}
	}
	if err := m.Save(ctx, snaps); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pend == nil {
		m.pend = make(map[uuid.UUID]PendingRecord)
	}
	if now.Sub(m.pruned) >= time.Second { // at most once a second: it walks them all
		m.pruned = now
		for id, r := range m.pend {
			if !r.Expires.After(now) {
				delete(m.pend, id)
			}
		}
	}
	for _, r := range recs {
		if r.State == PendingDropped || !r.Expires.After(now) {
			delete(m.pend, r.ID)
			continue
		}
		if old, ok := m.pend[r.ID]; ok && old.State == PendingSettled && r.State == PendingOpen {
			continue // a settled mark is never undone by an older save
		}
		r.Windows = slices.Clone(r.Windows)
		m.pend[r.ID] = r
	}
	return nil
}

// LoadPending returns copies of the records that expire after now.
func (m *MemoryStore) LoadPending(_ context.Context, now time.Time) ([]PendingRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PendingRecord, 0, len(m.pend))
	for _, r := range m.pend {
		if r.Expires.After(now) {
			r.Windows = slices.Clone(r.Windows)
			out = append(out, r)
		}
	}
	return out, nil
}

// pendingIndex finds a record's slab index by its id: open addressing
// with linear probing over the id's random bits, at most half full, and
// deletion by backward shift, so that churn leaves no tombstones to probe
// through (a Go map under constant insert and delete at a steady size
// spends most of a lookup on them). A slot holds the upper half of the
// id's hash beside the index, so that a probe reads a record only when
// the hashes match: 16 bytes of index per record.
type pendingIndex struct {
	slots []uint64 // hash>>32 << 32 | slab index + 1; 0 is empty
	shift uint     // 64 - log2(len(slots))
	n     int      // entries
	max   int      // the most slots: twice the most entries
}

// init sizes x for at most n entries; it starts small and doubles as it
// fills, so that an engine that settles little holds little.
func (x *pendingIndex) init(n int) {
	x.max = ceilPow2(min(max(2*n, 16), 1<<31))
	x.resize(min(x.max, 64))
}

// resize rebuilds x with c slots, from the hashes the slots hold.
func (x *pendingIndex) resize(c int) {
	old := x.slots
	x.slots = make([]uint64, c)
	x.shift = uint(64 - bits.TrailingZeros(uint(c)))
	mask := c - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := x.homeOf(v)
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = v
	}
}

// hashID mixes the random half of a UUIDv7 (any other id is hashed the
// same way).
func hashID(id uuid.UUID) uint64 {
	return binary.LittleEndian.Uint64(id[8:16]) * 0x9E3779B97F4A7C15
}

// homeOf is the slot where the probe of the entry v starts.
func (x *pendingIndex) homeOf(v uint64) int { return int((v >> 32 << 32) >> x.shift) }

func (x *pendingIndex) find(id uuid.UUID, recs *pendingSlab) (int32, bool) {
	i, ok := x.slot(id, recs)
	if !ok {
		return 0, false
	}
	return int32(uint32(x.slots[i])) - 1, true
}

// slot returns the slot that holds id.
func (x *pendingIndex) slot(id uuid.UUID, recs *pendingSlab) (int, bool) {
	h := hashID(id)
	tag, mask := h>>32, len(x.slots)-1
	for i := int(h >> x.shift); ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return 0, false
		}
		if v>>32 == tag && recs.at(int32(uint32(v))-1).id == id {
			return i, true
		}
	}
}

// insert adds id at slab index idx; id must be absent, and the index
// hold fewer than max/2 entries.
func (x *pendingIndex) insert(id uuid.UUID, idx int32) {
	if 2*(x.n+1) > len(x.slots) && len(x.slots) < x.max {
		x.resize(2 * len(x.slots))
	}
	x.n++
	h := hashID(id)
	mask := len(x.slots) - 1
	i := int(h >> x.shift)
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = h>>32<<32 | uint64(uint32(idx+1))
}

// remove deletes id, shifting back the entries after it that probed past
// its slot.
func (x *pendingIndex) remove(id uuid.UUID, recs *pendingSlab) {
	i, ok := x.slot(id, recs)
	if !ok {
		return
	}
	x.n--
	mask := len(x.slots) - 1
	for j := i; ; {
		x.slots[i] = 0
		for {
			j = (j + 1) & mask
			v := x.slots[j]
			if v == 0 {
				return
			}
			k := x.homeOf(v)
			// The entry at j stays when its home lies cyclically in (i, j].
			if (i <= j && i < k && k <= j) || (i > j && (i < k || k <= j)) {
				continue
			}
			x.slots[i] = v
			i = j
			break
		}
	}
}
