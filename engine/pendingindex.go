package engine

import (
	"encoding/binary"
	"math/bits"

	"github.com/google/uuid"
)

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
