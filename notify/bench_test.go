package notify

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// BenchmarkObserve measures the per-request cost of the anomaly detector on
// the Check path, with steady load (no anomalies), per subject count.
func BenchmarkObserve(b *testing.B) {
	for _, subjects := range []int{1, 1000, 100_000} {
		b.Run(fmt.Sprintf("subjects=%d", subjects), func(b *testing.B) {
			n, err := New(Config{Enabled: true, Anomaly: AnomalyConfig{Enabled: true, MaxSubjects: 200_000}}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			names := make([]string, subjects)
			for i := range names {
				names[i] = fmt.Sprintf("user-%d", i)
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(1) * 7919
				for pb.Next() {
					i++
					n.Observe(names[i%uint64(subjects)], "standard", t0.Add(time.Duration(i%60)*time.Second))
				}
			})
		})
	}
}

// BenchmarkEmit measures Emit for a duplicate (the common case when the
// engine re-reports) and for a new alert with the queue drained by Run.
func BenchmarkEmit(b *testing.B) {
	b.Run("duplicate", func(b *testing.B) {
		n, err := New(Config{Enabled: true, Channels: []Channel{ChannelDashboard}}, Options{Now: fixedNow})
		if err != nil {
			b.Fatal(err)
		}
		ev := event(engine.EventThreshold, "alice", t0)
		n.Emit(ev)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Emit(ev)
			}
		})
	})
	b.Run("new", func(b *testing.B) {
		n, err := New(Config{Enabled: true, Channels: []Channel{ChannelDashboard}}, Options{Now: fixedNow})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = n.Run(ctx) }()
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Emit(event(engine.EventThreshold, "alice", t0.Add(time.Duration(next.Add(1))*time.Hour)))
			}
		})
	})
	b.Run("queue_full", func(b *testing.B) {
		n, err := New(Config{Enabled: true, QueueSize: 1, Channels: []Channel{ChannelDashboard}}, Options{Now: fixedNow})
		if err != nil {
			b.Fatal(err)
		}
		n.Emit(event(engine.EventThreshold, "bob", t0))
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Emit(event(engine.EventThreshold, "alice", t0.Add(time.Duration(next.Add(1))*time.Hour)))
			}
		})
	})
}
