package main

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var sweepGarbage []byte

// TestSweepPollReadsDuringABackgroundSweep is the purpose of
// pollDuringSweeps: on one processor, a byte that arrives while the
// runtime sweeps the heap after a collection is read before the sweep
// ends. Without it the sweeper keeps the processor until the heap is
// swept, and the scheduler polls the network only then.
func TestSweepPollReadsDuringABackgroundSweep(t *testing.T) {
	// A pipe waits on the network poller as a connection does.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// A floor under the heap goal, as serve has, so that each cycle
	// leaves some 16 MB of small garbage to sweep.
	floor := heapFloor(16)
	defer runtime.KeepAlive(floor)
	stop := pollDuringSweeps()
	defer stop()

	for round := range 5 {
		var seq, readAt, sweptAt atomic.Int64
		readerParked := make(chan struct{})
		read := make(chan struct{})
		go func() { // a reader parked on the poller
			close(readerParked)
			var b [1]byte
			if _, err := pr.Read(b[:]); err == nil {
				readAt.Store(seq.Add(1))
			}
			close(read)
		}()
		<-readerParked
		runtime.Gosched() // let it reach the poller

		// A finalizer on a large object runs as the sweep starts (large
		// spans are swept first); cleanups run once it has ended.
		started, swept := make(chan struct{}), make(chan struct{})
		runtime.SetFinalizer(new([sweepSentinelBytes]byte), func(*[sweepSentinelBytes]byte) { close(started) })
		runtime.AddCleanup(new([4]uintptr), func(struct{}) {
			sweptAt.Store(seq.Add(1))
			close(swept)
		}, struct{}{})
	alloc:
		for i := 0; ; i++ {
			sweepGarbage = make([]byte, 256)
			if i%1024 == 0 {
				select {
				case <-started:
					break alloc
				default:
					runtime.Gosched()
				}
			}
		}
		if _, err := pw.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		<-swept
		<-read
		if r, s := readAt.Load(), sweptAt.Load(); r == 0 || r > s {
			t.Fatalf("round %d: the byte sent as the sweep started was read after it ended (%v later): nothing polled the network while it ran", round, time.Since(start))
		}
	}
}
