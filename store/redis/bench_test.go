package redis

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
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
				e, err := engine.New(cfg.Rules, cfg.Options)
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

// BenchmarkScript runs the charge script of a Plan like the load
// benchmark's (two fixed-window limits and a priced balance) straight
// through Store.Charge, 64 in flight, over 1 or 10 000 subjects, and
// reports redis-server's CPU time per script (redis-µs/op, from
// /proc/PID/stat), the share of a Check's cost that the script's shape
// decides.
func BenchmarkScript(b *testing.B) {
	srv := startServer(b)
	for _, subjects := range []int{1, 10000} {
		b.Run("subjects="+strconv.Itoa(subjects), func(b *testing.B) {
			st := srv.open(b, Options{Prefix: "script" + strconv.Itoa(subjects), Timeout: time.Second})
			now := time.Now()
			hourStart, minStart := now.Truncate(time.Hour), now.Truncate(time.Minute)
			plans := make([]engine.Plan, subjects)
			for i := range plans {
				id := "user-" + strconv.Itoa(i)
				plans[i] = engine.Plan{Tag: id, Now: now, Counters: []engine.PlanCounter{
					{Owner: id, Limit: "t:standard:minute", Start: minStart, End: minStart.Add(time.Minute),
						ExpireAt: minStart.Add(time.Minute), Max: 1 << 40, Amount: 1},
					{Owner: id, Limit: "t:standard:hour", Start: hourStart, End: hourStart.Add(time.Hour),
						ExpireAt: hourStart.Add(time.Hour), Max: 1 << 40, Amount: 1},
				}, Balance: engine.PlanBalance{Owner: id, Cost: 2, Grant: 1 << 40, PeriodStart: hourStart}}
			}
			var next atomic.Uint64
			cpu0 := procCPU(b, srv.Pid())
			b.ReportAllocs()
			b.SetParallelism(64 / max(runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					p := plans[next.Add(1)%uint64(subjects)]
					if r, err := st.Charge(ctx, &p); err != nil || !r.Allowed {
						b.Errorf("Charge = %+v, %v", r, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(procCPU(b, srv.Pid())-cpu0)/float64(time.Microsecond)/float64(b.N), "redis-µs/op")
			b.ReportMetric(float64(b.N)/float64(st.Stats().Calls), "scripts/pipeline")
		})
	}
}

// procCPU returns the user plus system CPU time of process pid.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatalf("read the CPU time of redis-server: %v", err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat has %d fields after the name, want 13 or more", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100
