package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// BenchmarkCharge compares a Check decided by the in-memory engine with
// one decided through Redis (exact, and leased with blocks of 64), per
// subject count, with 16 requests in flight per CPU. It reports Redis
// round trips per Check (rt/op). Requests cost no tokens and are all
// admitted, so none is refused from the local cache and leases apply.
func BenchmarkCharge(b *testing.B) {
	srv := startServer(b)
	for _, subjects := range []int{1, 1000} {
		for _, mode := range []string{"memory", "redis", "leased"} {
			b.Run(mode+"/subjects="+strconv.Itoa(subjects), func(b *testing.B) {
				cfg := testConfig(1<<40, 0, 0, 0)
				cfg.Now = fixedNow()
				var st *Store
				switch mode {
				case "redis":
					st = srv.open(b, Options{Prefix: "bench" + strconv.Itoa(subjects), Timeout: time.Second})
				case "leased":
					st = srv.open(b, Options{Prefix: "lbench" + strconv.Itoa(subjects), Lease: 64, Timeout: time.Second})
				}
				if st != nil {
					cfg.Authority = st
				}
				e, err := engine.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				names := make([]string, subjects)
				for i := range names {
					names[i] = "s" + strconv.Itoa(i)
				}
				var next atomic.Uint64
				b.ReportAllocs()
				b.SetParallelism(16)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						req := engine.Request{Subject: names[next.Add(1)%uint64(subjects)], Action: "translate"}
						if d, err := e.Charge(ctx, req); err != nil || !d.Allowed {
							b.Errorf("Charge = %v, %v", d.Reason, err)
							return
						}
					}
				})
				if st != nil {
					b.ReportMetric(float64(st.Stats().Calls)/float64(b.N), "rt/op")
				}
			})
		}
	}
}
