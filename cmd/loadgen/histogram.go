package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram keeps every value below 2^(subBits+1) exactly and, above
// that, splits each power of two into 2^subBits equal buckets, so a
// recorded value is known to within 1/2^subBits (1.6%) of itself, from
// nanoseconds up to the whole int64 range, in a fixed array.
const (
	subBits    = 6
	subCount   = 1 << subBits // buckets per power of two
	exactBelow = 2 * subCount // values below this have a bucket each
	numBuckets = exactBelow + (63-subBits)*subCount
)

// histogram is a log-bucketed latency histogram in nanoseconds, in the
// manner of HdrHistogram. The zero value is empty and ready. It is not safe
// for concurrent use: each caller records into its own and they are merged.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64 // nanoseconds, for the mean
	min    int64
	max    int64
}

// bucketOf returns the index of the bucket holding v (v >= 0).
func bucketOf(v int64) int {
	if v < exactBelow {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	sub := int(v>>shift) - subCount
	return exactBelow + (shift-1)*subCount + sub
}

// bucketBounds returns the smallest and the largest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < exactBelow {
		return int64(i), int64(i)
	}
	shift := (i-exactBelow)/subCount + 1
	sub := int64((i-exactBelow)%subCount + subCount)
	lo = sub << shift
	return lo, lo + (int64(1) << shift) - 1
}

// Record adds one latency. Negative durations count as zero.
func (h *histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every value recorded in o to h.
func (h *histogram) Merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns how many values were recorded.
func (h *histogram) Count() uint64 { return h.n }

// Max returns the largest value recorded, or 0 when empty.
func (h *histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the values recorded, or 0 when empty.
func (h *histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// recorded values lie: the upper bound of the bucket that holds the value of
// rank ceil(q×n), capped at the largest value seen, so it never
// under-reports by more than the bucket width. It returns 0 when empty.
func (h *histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(hi, h.max))
		}
	}
	return time.Duration(h.max)
}

// sparse returns the non-empty buckets as [index, count] pairs.
func (h *histogram) sparse() [][2]uint64 {
	var out [][2]uint64
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// addSparse adds buckets returned by sparse, as if their values had been
// recorded: each counts as its bucket's midpoint for the mean, and min
// and max become bucket bounds. Unknown bucket indexes are ignored.
func (h *histogram) addSparse(buckets [][2]uint64) {
	for _, b := range buckets {
		i, c := b[0], b[1]
		if i >= numBuckets || c == 0 {
			continue
		}
		lo, hi := bucketBounds(int(i))
		h.counts[i] += c
		if h.n == 0 || lo < h.min {
			h.min = lo
		}
		h.max = max(h.max, hi)
		h.n += c
		h.sum += float64(c) * (float64(lo) + float64(hi)) / 2
	}
}
