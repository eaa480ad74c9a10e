package ledger

import "sync"

// queue holds the records Append queued for Run, oldest first, up to a
// bound, in chunks taken as records arrive. Its memory follows what
// waits, not the bound. It was a channel of QueueSize records, allocated
// whole: 65 536 slots of strings and slices that every garbage collection
// scanned, empty or not. That was most of a collection's mark work on a
// busy server, and stretched each collection, and the slower Checks
// during it, to tens of milliseconds.
type queue struct {
	mu     sync.Mutex
	chunks []*chunk // chunks[0] is the oldest
	n      int      // records waiting
	max    int
	free   []*chunk // emptied chunks kept for reuse, up to keepChunks
}

const (
	chunkLen = 256
	// keepChunks bounds the emptied chunks kept: a batch's worth at the
	// default BatchSize. The chunks a burst needed beyond that are let go.
	keepChunks = 16
)

// chunk is a run of queued records: recs[head:n] wait.
type chunk struct {
	recs    [chunkLen]Record
	head, n int
}

// push adds r and returns how many records wait, or reports false, adding
// nothing, when max already wait.
func (q *queue) push(r Record) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n >= q.max {
		return q.n, false
	}
	var tail *chunk
	if k := len(q.chunks); k > 0 && q.chunks[k-1].n < chunkLen {
		tail = q.chunks[k-1]
	} else {
		if f := len(q.free); f > 0 {
			tail, q.free = q.free[f-1], q.free[:f-1]
		} else {
			tail = new(chunk)
		}
		q.chunks = append(q.chunks, tail)
	}
	tail.recs[tail.n] = r
	tail.n++
	q.n++
	return q.n, true
}

// take appends up to k waiting records to out, oldest first, and returns
// it.
func (q *queue) take(out []Record, k int) []Record {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k > 0 && len(q.chunks) > 0 {
		c := q.chunks[0]
		m := min(k, c.n-c.head)
		out = append(out, c.recs[c.head:c.head+m]...)
		clear(c.recs[c.head : c.head+m]) // the strings are out's now
		c.head += m
		k -= m
		q.n -= m
		if c.head < c.n {
			break
		}
		c.head, c.n = 0, 0
		if len(q.chunks) == 1 {
			break // the tail: records go on filling it
		}
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		if len(q.free) < keepChunks {
			q.free = append(q.free, c)
		}
	}
	return out
}

// len returns how many records wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
