package redis

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

func TestBatching(t *testing.T) {
	srv := startServer(t)
	tests := []struct {
		name  string
		flush bool // SCRIPT FLUSH first: every script of the batch is reloaded
	}{
		{name: "scripts loaded"},
		{name: "after SCRIPT FLUSH", flush: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := srv.open(t, Options{Prefix: "batch" + tc.name, Timeout: 5 * time.Second})
			e := newEngines(t, st, testConfig(25, 0, 0, 0), 1)[0]
			if tc.flush {
				if err := srv.client(t).ScriptFlush(context.Background()).Err(); err != nil {
					t.Fatalf("SCRIPT FLUSH: %v", err)
				}
			}
			if got := hammer(t, []*engine.Engine{e}, func(int) engine.Request { return engine.Request{Subject: "bea"} }); got != 25 {
				t.Fatalf("admitted %d of 64, want exactly 25", got)
			}
			s := st.Stats()
			if s.Errors != 0 || s.Batched <= s.Calls {
				t.Fatalf("stats %+v: want no errors and fewer round trips than commands", s)
			}
		})
	}
}

func TestBatchDeadline(t *testing.T) {
	srv := startServer(t)
	const timeout = 100 * time.Millisecond
	for _, pipelines := range []int{1, 2} {
		t.Run("pipelines="+strconv.Itoa(pipelines), func(t *testing.T) {
			st := srv.open(t, Options{Timeout: timeout, Pipelines: pipelines, Prefix: "dl" + strconv.Itoa(pipelines)})
			e := newEngines(t, st, testConfig(100000, 0, 0, 0), 1)[0]
			for round := range 2 {
				pauseAndCheck(t, srv, e, timeout, round)
			}
		})
	}
}

// pauseAndCheck pauses the server under 32 concurrent callers, whose
// every Check must fail within the deadline, then unpauses it and checks
// that the batcher serves again: no caller that gave up kept its turn.
func pauseAndCheck(t *testing.T, srv *server, e *engine.Engine, timeout time.Duration, round int) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Charge(ctx, engine.Request{Subject: "dee"}); err != nil {
		t.Fatalf("round %d: Charge: %v", round, err)
	}
	if err := srv.client(t).Do(ctx, "CLIENT", "PAUSE", "700", "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			// Staggered, so that callers give up while others lead.
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			start := time.Now()
			_, _ = e.Charge(ctx, engine.Request{Subject: "dee"})
			if took := int64(time.Since(start)); took > slowest.Load() {
				slowest.Store(took)
			}
		})
	}
	wg.Wait()
	if time.Duration(slowest.Load()) > timeout+450*time.Millisecond {
		t.Fatalf("round %d: the slowest Check took %s, want within the %s deadline", round, time.Duration(slowest.Load()), timeout)
	}
	if err := srv.client(t).Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	var d engine.Decision
	var err error
	for range 20 { // the pool may hold connections whose replies are stale
		if d, err = e.Charge(ctx, engine.Request{Subject: "dee"}); err == nil {
			break
		}
	}
	if err != nil || !d.Allowed {
		t.Fatalf("round %d: Charge after the pause = %v, %v; want allowed: the batcher must not stay stuck", round, d.Allowed, err)
	}
}
