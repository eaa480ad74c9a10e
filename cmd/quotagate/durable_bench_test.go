package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/telemetry"
)

// BenchmarkCheckDurable measures the cost per Check of the ext_authz
// handler with the in-memory engine alone, and with the SQLite store and
// the ledger on (durability batch and sync). cpu-ns/op is the process's
// CPU time (user + system) per Check, so the engine's flushes and the
// ledger writer's batches count too.
func BenchmarkCheckDurable(b *testing.B) {
	for _, mode := range []struct{ name, durability string }{
		{name: "memory"}, {name: "sqlite-batch", durability: "batch"}, {name: "sqlite-sync", durability: "sync"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			o := assembleOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Durability: mode.durability}
			if mode.durability != "" {
				o.DataDir = b.TempDir()
			}
			benchDurable(b, o)
		})
	}
}

func benchDurable(b *testing.B, o assembleOptions) {
	file, err := config.Parse([]byte(benchConfig))
	if err != nil {
		b.Fatal(err)
	}
	if o.Providers, err = telemetry.Setup(context.Background(), telemetry.Options{}); err != nil {
		b.Fatal(err)
	}
	a, err := assemble(context.Background(), file, o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	engDone := goDone(func() error { return a.eng.Run(ctx) })
	writerDone := goDone(func() error {
		if a.backends.Writer == nil {
			return nil
		}
		return a.backends.Writer.Run(ctx)
	})
	var n atomic.Int64
	b.ReportAllocs()
	// Many concurrent Checks, as from Envoy's streams, so that durability
	// sync's group commit has something to group.
	b.SetParallelism(16)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			user := "u" + strconv.FormatInt(i%1000, 10)
			if i%100 == 0 {
				user = "denied-" + strconv.FormatInt(i%2, 10)
			}
			_, err := a.authz.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/v1/items", Host: "api", Headers: map[string]string{"x-user-id": user},
				}},
			}})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	cancel()
	<-engDone
	<-writerDone
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	a.close()
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
