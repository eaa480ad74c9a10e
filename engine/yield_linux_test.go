package engine

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPacerPauseEndsAfterTheNetworkPoll is the Pacer's purpose on one
// processor: while other goroutines keep the processor busy (as Checks
// do under load), the scheduler polls the network only when its monitor
// forces it, and a pause must not end before that, or the background
// work resumes with requests still unread. A timed sleep fails this: its
// timer brings the work back first.
func TestPacerPauseEndsAfterTheNetworkPoll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for round := range 5 {
		var got atomic.Bool
		readerParked := make(chan struct{})
		go func() { // a connection's reader, parked on the poller
			close(readerParked)
			var b [1]byte
			if _, err := server.Read(b[:]); err == nil {
				got.Store(true)
			}
		}()
		<-readerParked
		runtime.Gosched() // let it reach the poller

		// Two goroutines passing a token back and forth keep one of them
		// runnable at every moment, so nothing but the monitor polls.
		stop := make(chan struct{})
		var busy sync.WaitGroup
		ping, pong := make(chan struct{}, 1), make(chan struct{}, 1)
		ping <- struct{}{}
		for _, pair := range [][2]chan struct{}{{ping, pong}, {pong, ping}} {
			busy.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-pair[0]:
						pair[1] <- struct{}{}
					}
				}
			})
		}

		p := &Pacer{Slice: time.Microsecond, Pause: 100 * time.Microsecond, quiet: time.Hour}
		p.Step()
		time.Sleep(10 * time.Microsecond) // the slice is used up
		if _, err := client.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p.Step() // pauses
		took := time.Since(start)
		// The reader was made runnable by the same poll that ended the
		// pause, and runs before this goroutine's turn comes again.
		for range 3 {
			runtime.Gosched()
		}
		arrived := got.Load()
		close(stop)
		busy.Wait()
		if p.Pauses() != 1 {
			t.Fatalf("round %d: Pauses = %d, want 1", round, p.Pauses())
		}
		if !arrived {
			t.Fatalf("round %d: the pause ended after %v with the byte sent before it still unread: it did not wait for the network poll", round, took)
		}
	}
}
