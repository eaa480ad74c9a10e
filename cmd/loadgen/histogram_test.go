package main

import (
	"math"
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 12345, 1 << 20, 999_999_999, math.MaxInt64} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, numBuckets)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d with bounds [%d, %d]", v, i, lo, hi)
		}
		if width := float64(hi - lo + 1); v >= exactBelow && width/float64(lo) > 1.0/subCount+1e-12 {
			t.Errorf("bucket %d [%d, %d] wider than 1/%d of its lower bound", i, lo, hi, subCount)
		}
	}
}

func TestQuantile(t *testing.T) {
	uniform := func(n int64) *histogram {
		var h histogram
		for v := int64(1); v <= n; v++ {
			h.Record(time.Duration(v) * time.Microsecond)
		}
		return &h
	}
	tests := []struct {
		name string
		h    *histogram
		q    float64
		want time.Duration
	}{
		{name: "empty", h: &histogram{}, q: 0.5, want: 0},
		{name: "single value", h: uniform(1), q: 0.99, want: time.Microsecond},
		{name: "p50 of 1..100000µs", h: uniform(100_000), q: 0.50, want: 50 * time.Millisecond},
		{name: "p90 of 1..100000µs", h: uniform(100_000), q: 0.90, want: 90 * time.Millisecond},
		{name: "p99 of 1..100000µs", h: uniform(100_000), q: 0.99, want: 99 * time.Millisecond},
		{name: "p100 is the max", h: uniform(100_000), q: 1, want: 100 * time.Millisecond},
		{name: "p0 is the min's bucket", h: uniform(100_000), q: 0, want: time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Quantile(tt.q)
			// A quantile is reported as its bucket's upper bound: never
			// below the true value, and above it by at most 1/subCount.
			if got < tt.want || float64(got) > float64(tt.want)*(1+1.0/subCount) {
				t.Errorf("Quantile(%g) = %v, want %v (+%.1f%%)", tt.q, got, tt.want, 100.0/subCount)
			}
		})
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	var all, a, b histogram
	for v := range 5000 {
		d := time.Duration(v*v) * time.Nanosecond
		all.Record(d)
		if v%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&histogram{})
	if merged != all {
		t.Fatalf("merged histogram differs: count %d max %v mean %v, want count %d max %v mean %v",
			merged.Count(), merged.Max(), merged.Mean(), all.Count(), all.Max(), all.Mean())
	}
	if merged.min != 0 {
		t.Errorf("min = %d, want 0", merged.min)
	}
}

func TestRecordNegativeIsZero(t *testing.T) {
	var h histogram
	h.Record(-time.Second)
	if h.Count() != 1 || h.Max() != 0 || h.Quantile(1) != 0 {
		t.Errorf("negative duration: count %d max %v p100 %v, want 1, 0, 0", h.Count(), h.Max(), h.Quantile(1))
	}
}

func BenchmarkRecord(b *testing.B) {
	b.ReportAllocs()
	var h histogram
	for i := range b.N {
		h.Record(time.Duration(i%1_000_000) * time.Microsecond)
	}
}

func TestSparseRoundTrip(t *testing.T) {
	var h histogram
	for v := range 10000 {
		h.Record(time.Duration(v*37) * time.Nanosecond)
	}
	var back histogram
	back.addSparse(h.sparse())
	back.addSparse([][2]uint64{{numBuckets + 5, 3}}) // ignored
	if back.counts != h.counts || back.Count() != h.Count() {
		t.Fatal("bucket counts differ after sparse and addSparse")
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if got, want := back.Quantile(q), h.Quantile(q); got != want {
			t.Errorf("Quantile(%g) = %v after the round trip, want %v", q, got, want)
		}
	}
}
