package engine

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// rateCell counts admitted requests per second in two alternating buckets.
// One cell lives in each shard and is written only under that shard's lock,
// so writers never contend on a shared cache line; readers use atomics.
type rateCell struct {
	sec [2]atomic.Int64
	n   [2]atomic.Int64
}

// addLocked counts one admitted request at now (unix ns). The caller holds
// the lock of the shard that owns c.
func (c *rateCell) addLocked(now int64) {
	s := now / int64(time.Second)
	i := s & 1
	if c.sec[i].Load() != s {
		c.n[i].Store(0)
		c.sec[i].Store(s)
	}
	c.n[i].Add(1)
}

// counts returns the counts of the second containing now and of the one
// before it.
func (c *rateCell) counts(now int64) (cur, prev int64) {
	s := now / int64(time.Second)
	if c.sec[s&1].Load() == s {
		cur = c.n[s&1].Load()
	}
	if c.sec[(s-1)&1].Load() == s-1 {
		prev = c.n[(s-1)&1].Load()
	}
	return cur, prev
}

// capacity holds the run-time capacity settings and the cached utilization.
type capacity struct {
	rps     atomic.Uint64 // float64 bits
	factor  atomic.Uint64 // float64 bits
	util    atomic.Uint64 // float64 bits, cached utilization
	utilAt  atomic.Int64  // unix ns when util was computed
	refresh int64         // ns between recomputations of util
}

// utilRefresh bounds how often the utilization is recomputed from the shard
// cells; between refreshes requests read the cached value.
const utilRefresh = int64(5 * time.Millisecond)

func (c *capacity) requestsPerSecond() float64 { return math.Float64frombits(c.rps.Load()) }
func (c *capacity) factorValue() float64       { return math.Float64frombits(c.factor.Load()) }

// admittedRate is the aggregate admitted rate at now (requests/second): the
// previous second weighted by how much of it still overlaps the last
// second, plus the current one.
func (e *Engine) admittedRate(now int64) float64 {
	var cur, prev int64
	for i := range e.shards {
		c, p := e.shards[i].meter.counts(now)
		cur += c
		prev += p
	}
	frac := float64(floorMod(now, int64(time.Second))) / float64(time.Second)
	return float64(prev)*(1-frac) + float64(cur)
}

// utilization returns the admitted rate divided by capacity, recomputed at
// most every utilRefresh; 0 when shedding is off.
func (e *Engine) utilization(now int64) float64 {
	rps := e.cap.requestsPerSecond()
	if rps <= 0 {
		return 0
	}
	at := e.cap.utilAt.Load()
	if at != 0 && now >= at && now-at < e.cap.refresh {
		return math.Float64frombits(e.cap.util.Load())
	}
	u := e.admittedRate(now) / rps
	if e.cap.utilAt.CompareAndSwap(at, now) {
		e.cap.util.Store(math.Float64bits(u))
	}
	return u
}

// shed reports whether a request of priority p is shed at now.
func (e *Engine) shed(rs *ruleset, p Priority, now int64) bool {
	if p >= PriorityCritical || p < PriorityLow {
		return false
	}
	if e.cap.requestsPerSecond() <= 0 {
		return false
	}
	return e.utilization(now) > rs.shedAt[p]
}

// scaledMax applies the capacity factor f to limit: floor(limit × f), at
// least 1 when limit > 0.
// The result never exceeds MaxQuantity: a factor above 1 cannot lift a
// limit past what the engine counts, nor wrap it (a float64 above the
// int64 range does not convert to a usable int64).
func scaledMax(limit int64, f float64) int64 {
	if f == 1 || limit <= 0 || !(f > 0) || math.IsInf(f, 0) {
		return min(limit, MaxQuantity)
	}
	m := math.Floor(float64(limit) * f)
	if m >= float64(MaxQuantity) {
		return MaxQuantity
	}
	return max(int64(m), 1)
}

// CapacityStatus is the engine's load picture.
type CapacityStatus struct {
	// RequestsPerSecond is the configured capacity; 0 means shedding is off.
	RequestsPerSecond float64
	// Factor scales every limit.
	Factor float64
	// AdmittedRate is the estimated admitted requests per second.
	AdmittedRate float64
	// Utilization is AdmittedRate / RequestsPerSecond (0 when off).
	Utilization float64
}

// SetCapacity sets the admitted rate (requests per second) the system can
// sustain; 0 turns shedding off. It is safe for concurrent use.
func (e *Engine) SetCapacity(requestsPerSecond float64) error {
	if requestsPerSecond < 0 || math.IsNaN(requestsPerSecond) || math.IsInf(requestsPerSecond, 0) {
		return fmt.Errorf("engine: capacity must be a finite number >= 0, got %g", requestsPerSecond)
	}
	e.cap.rps.Store(math.Float64bits(requestsPerSecond))
	e.cap.utilAt.Store(0)
	return nil
}

// SetCapacityFactor scales every limit's Max by f (0.5 halves them, 2
// doubles them) from the next request on. It is safe for concurrent use.
func (e *Engine) SetCapacityFactor(f float64) error {
	if f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("engine: capacity factor must be a finite number > 0, got %g", f)
	}
	e.cap.factor.Store(math.Float64bits(f))
	return nil
}

// Capacity returns the current capacity settings and load.
func (e *Engine) Capacity() CapacityStatus {
	now := e.now().UnixNano()
	s := CapacityStatus{
		RequestsPerSecond: e.cap.requestsPerSecond(),
		Factor:            e.cap.factorValue(),
		AdmittedRate:      e.admittedRate(now),
	}
	if s.RequestsPerSecond > 0 {
		s.Utilization = s.AdmittedRate / s.RequestsPerSecond
	}
	return s
}
