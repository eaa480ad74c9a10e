package main

import (
	"runtime"
	"time"
)

const (
	// sweepPollEvery is how often pollDuringSweeps polls the network
	// while the runtime sweeps.
	sweepPollEvery = 200 * time.Microsecond
	// sweepPollMax bounds the polling after one collection, should the
	// end of its sweep go unnoticed.
	sweepPollMax = 200 * time.Millisecond
	// sweepSentinelBytes is the size of the object whose finalizer tells
	// that a sweep has started: larger than the largest size class, so
	// that it has a span of its own, and those are swept first.
	sweepSentinelBytes = 33 << 10
)

// pollDuringSweeps makes the runtime poll the network every
// sweepPollEvery while it sweeps the heap after a garbage collection, in a
// process with one processor (GOMAXPROCS 1), until stop is called.
//
// After each collection the runtime frees the garbage span by span, in a
// background goroutine. With one processor that goroutine yields every few
// spans, but only to goroutines that can already run: the scheduler polls
// the network when nothing can run, or from its monitor every 10 ms. A heap
// of about 100 MB took 4-6 ms to sweep, and no request was read meanwhile.
// Stopping the world polls the network when the world starts again, and
// runtime.ReadMemStats stops it for about 7 µs with one processor.
//
// Two sentinels, made anew after each collection, tell when to poll. The
// finalizer of a large object runs as the sweep starts, since large spans
// are swept first; the runtime queues cleanups until its sweep has ended.
// Both are how the runtime behaves, not what it promises: were either to
// change, the network would be polled too late or too long (sweepPollMax),
// never wrongly.
func pollDuringSweeps() (stop func()) {
	started, swept := make(chan struct{}, 1), make(chan struct{}, 1)
	done := make(chan struct{})
	// signal reports a sentinel's event, and whether to make another.
	signal := func(c chan struct{}) bool {
		select {
		case <-done:
			return false
		default:
		}
		select {
		case c <- struct{}{}:
		default:
		}
		return true
	}
	var armStart, armEnd func()
	armStart = func() {
		runtime.SetFinalizer(new([sweepSentinelBytes]byte), func(*[sweepSentinelBytes]byte) {
			if signal(started) {
				armStart()
			}
		})
	}
	armEnd = func() {
		runtime.AddCleanup(new([4]uintptr), func(struct{}) {
			if signal(swept) {
				armEnd()
			}
		}, struct{}{})
	}
	armStart()
	armEnd()
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-started:
			}
			if runtime.GOMAXPROCS(0) == 1 { // else another processor polls
				pollUntilSwept(&ms, swept, done)
			}
		}
	}()
	return func() { close(done) }
}

// pollUntilSwept polls the network every sweepPollEvery until swept or
// done is ready, for sweepPollMax at most.
func pollUntilSwept(ms *runtime.MemStats, swept, done <-chan struct{}) {
	for begin := time.Now(); time.Since(begin) < sweepPollMax; time.Sleep(sweepPollEvery) {
		runtime.ReadMemStats(ms)
		select {
		case <-swept:
			return
		case <-done:
			return
		default:
		}
	}
}
