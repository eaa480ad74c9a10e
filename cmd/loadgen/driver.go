package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// driveConfig is one load run.
type driveConfig struct {
	Name        string
	Addrs       []string // servers; connections are spread over them
	Conns       int      // gRPC connections in all
	Concurrency int      // callers, each with one request in flight
	Warmup      time.Duration
	Duration    time.Duration // the measured window
	// Rate paces the callers to this many Checks per second in all (an
	// open loop, so that servers are compared at the same load); zero means
	// a closed loop, each caller sending as soon as its answer arrives.
	Rate         float64
	ReadyTimeout time.Duration // how long to wait for the servers to answer
	ServerPIDs   []int         // processes whose CPU time is charged to the servers
	ClkTck       int           // clock ticks per second of /proc/PID/stat
	RedisAddr    string        // a Redis server whose commands are counted; empty for none
	PerfPath     string        // perf, to count the servers' cycles; empty for none
	// Prime sends every server one Check per user before the warm-up, so
	// that the measured window is the steady state of servers that have
	// seen every user (a replica's first Check of a subject reads it from
	// the store).
	Prime    bool
	Workload workloadConfig
}

// Phases of a run. Callers record only what completes while measuring.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// callerStats is what one caller saw in the measured window.
type callerStats struct {
	hist     histogram
	ok       int64
	denied   map[int32]int64 // by the HTTP status of the denial
	errs     map[string]int64
	firstErr error
}

// drive runs the load and measures it. It returns an error only when no
// measurement could be made; failed Checks are counted in the Result.
func drive(ctx context.Context, cfg driveConfig) (Result, error) {
	w, err := newWorkload(cfg.Workload)
	if err != nil {
		return Result{}, err
	}
	clients, closeAll, err := dial(cfg.Addrs, cfg.Conns)
	if err != nil {
		return Result{}, err
	}
	defer closeAll()
	if err := waitReady(ctx, w.newBuilder(-1), clients, cfg.ReadyTimeout); err != nil {
		return Result{}, err
	}
	if cfg.Prime {
		if err := prime(ctx, w, clients[:min(len(cfg.Addrs), len(clients))], cfg.Concurrency); err != nil {
			return Result{}, err
		}
	}

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var phase atomic.Int32
	stats := make([]*callerStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range cfg.Concurrency {
		st := &callerStats{denied: map[int32]int64{}, errs: map[string]int64{}}
		stats[i] = st
		p := newPacer(cfg.Rate, cfg.Concurrency, i)
		wg.Go(func() { call(callCtx, &phase, clients[i%len(clients)], w.newBuilder(i), p, st) })
	}
	rc := newRedisCounter(cfg.RedisAddr)
	defer rc.close()
	win, err := measureWindow(ctx, cfg, rc, &phase)
	if err != nil {
		cancel()
		wg.Wait()
		return Result{}, err
	}
	// Callers finish their in-flight Check, which is not counted; a server
	// that stopped answering is not waited for long.
	stop := time.AfterFunc(5*time.Second, cancel)
	wg.Wait()
	stop.Stop()
	return newResult(cfg, win, stats), nil
}

// window is the measured interval and the CPU spent in it.
type window struct {
	wall         time.Duration
	server, self cpuTicks
	redis        redisStats // what the Redis server ran, if one is watched
	perf         perfCounts // the servers' cycles, with --perf
}

// measureWindow sleeps through the warm-up, then brackets the measured
// window with CPU readings, switching the callers' phase at each end.
func measureWindow(ctx context.Context, cfg driveConfig, rc *redisCounter, phase *atomic.Int32) (window, error) {
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return window{}, err
	}
	redis0, err := rc.stats(ctx)
	if err != nil {
		return window{}, err
	}
	srv0, err := readCPUAll(cfg.ServerPIDs)
	if err != nil {
		return window{}, err
	}
	self0, err := readCPU(0)
	if err != nil {
		return window{}, err
	}
	pc, err := startPerf(cfg.PerfPath, cfg.ServerPIDs)
	if err != nil {
		return window{}, err
	}
	t0 := time.Now()
	phase.Store(phaseMeasure)
	err = sleep(ctx, cfg.Duration)
	phase.Store(phaseDone)
	wall := time.Since(t0)
	perf, perr := pc.stop()
	if err != nil {
		return window{}, err
	}
	if perr != nil {
		return window{}, perr
	}
	srv1, err := readCPUAll(cfg.ServerPIDs)
	if err != nil {
		return window{}, err
	}
	self1, err := readCPU(0)
	if err != nil {
		return window{}, err
	}
	redis1, err := rc.stats(ctx)
	if err != nil {
		return window{}, err
	}
	return window{
		wall:   wall,
		redis:  redisStats{Calls: redis1.Calls - redis0.Calls, Scripts: redis1.Scripts - redis0.Scripts},
		server: cpuTicks{User: srv1.User - srv0.User, System: srv1.System - srv0.System},
		self:   cpuTicks{User: self1.User - self0.User, System: self1.System - self0.System},
		perf:   perf,
	}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("loadgen: interrupted: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// call is one caller's loop: one Check in flight at a time until the
// measured window is over.
func call(ctx context.Context, phase *atomic.Int32, c authv3.AuthorizationClient, b *builder, p *pacer, st *callerStats) {
	for phase.Load() != phaseDone && ctx.Err() == nil {
		if p.wait(ctx) != nil {
			return
		}
		req := b.next(time.Now())
		start := time.Now()
		resp, err := c.Check(ctx, req)
		d := time.Since(start)
		if phase.Load() != phaseMeasure {
			continue
		}
		switch {
		case err != nil:
			st.errs[status.Code(err).String()]++
			if st.firstErr == nil {
				st.firstErr = err
			}
		case resp.GetStatus().GetCode() != 0:
			st.denied[int32(resp.GetDeniedResponse().GetStatus().GetCode())]++
		default:
			st.ok++
		}
		st.hist.Record(d)
	}
}

// dial opens conns connections, spread round-robin over addrs.
func dial(addrs []string, conns int) ([]authv3.AuthorizationClient, func(), error) {
	var ccs []*grpc.ClientConn
	closeAll := func() {
		for _, cc := range ccs {
			cc.Close()
		}
	}
	var clients []authv3.AuthorizationClient
	for i := range conns {
		addr := addrs[i%len(addrs)]
		// Each ClientConn is its own HTTP/2 connection.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("loadgen: dial %s: %w", addr, err)
		}
		ccs = append(ccs, cc)
		clients = append(clients, authv3.NewAuthorizationClient(cc))
	}
	return clients, closeAll, nil
}

// prime sends one Check per user of w to each of clients (one per
// server), from concurrency callers in all, and waits for the answers,
// which are not counted. A Check that fails fails the run: a server that
// cannot take the users once will not be measured.
func prime(ctx context.Context, w *workload, clients []authv3.AuthorizationClient, concurrency int) error {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for i := range max(concurrency, 1) {
		b := w.newBuilder(-2 - i)
		g.Go(func() error {
			for {
				n := int(next.Add(1) - 1)
				if n >= w.cfg.Users*len(clients) {
					return nil
				}
				c, u := clients[n%len(clients)], n/len(clients)
				attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.Check(attempt, b.forUser(u, time.Now()))
				cancel()
				if err != nil {
					return fmt.Errorf("loadgen: prime %s: %w", w.ids[u], err)
				}
			}
		})
	}
	return g.Wait()
}

// waitReady sends Checks on every connection until each is answered, so
// that a server still starting is not measured and its start-up errors are
// not counted.
func waitReady(ctx context.Context, b *builder, clients []authv3.AuthorizationClient, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, c := range clients {
		for {
			attempt, cancel := context.WithTimeout(ctx, time.Second)
			_, err := c.Check(attempt, b.next(time.Now()), grpc.WaitForReady(true))
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				return fmt.Errorf("loadgen: server not answering Checks after %s: %w (did it start? see its log)", timeout, errors.Join(err, ctx.Err()))
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// pacer spaces one caller's Checks evenly when a rate is set. A caller that
// falls behind (the server or loadgen is saturated) does not send a burst
// to catch up: it starts afresh from now, so the load stays at most the
// rate. The latency is measured from when a Check is sent. The zero value
// (no rate) never waits.
type pacer struct {
	interval time.Duration
	next     time.Time
}

// newPacer paces caller i of n so that all of them together send rate
// Checks per second, their slots staggered across the interval.
func newPacer(rate float64, n, i int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	interval := time.Duration(float64(n) / rate * float64(time.Second))
	return &pacer{interval: interval, next: time.Now().Add(interval * time.Duration(i) / time.Duration(n))}
}

// wait sleeps until the caller's next slot.
func (p *pacer) wait(ctx context.Context) error {
	if p.interval == 0 {
		return nil
	}
	now := time.Now()
	if now.Sub(p.next) > p.interval {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	p.next = p.next.Add(p.interval)
	return nil
}
