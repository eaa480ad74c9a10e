package engine

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// manyProcs makes a test's Pacer pace whatever GOMAXPROCS the test runs
// with.
const manyProcs = 1 << 20

func TestPacerSleepsOnlyOnceASliceIsUsed(t *testing.T) {
	p := &Pacer{Slice: 5 * time.Millisecond, Pause: 20 * time.Millisecond, MaxProcs: manyProcs, quiet: time.Hour}
	begin := time.Now()
	for range 100 {
		p.Step()
	}
	if n := p.Pauses(); n != 0 && time.Since(begin) < 5*time.Millisecond {
		t.Fatalf("paused %d times within one slice, want 0", n)
	}
	p = &Pacer{Slice: 2 * time.Millisecond, Pause: 20 * time.Millisecond, MaxProcs: manyProcs, quiet: time.Hour}
	p.Step()
	time.Sleep(3 * time.Millisecond) // work that used the slice without stepping
	start := time.Now()
	p.Step()
	if n := p.Pauses(); n != 1 {
		t.Fatalf("paused %d times after the slice, want 1", n)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("the pause lasted %v, want at least Pause (20ms)", d)
	}
	p.Step() // a fresh slice began with the pause's end
	if n := p.Pauses(); n != 1 {
		t.Errorf("paused %d times, want still 1 right after a pause", n)
	}
}

func TestPacerQuietSpellStartsAFreshSlice(t *testing.T) {
	p := &Pacer{Slice: time.Millisecond, Pause: time.Millisecond, MaxProcs: manyProcs}
	p.Step()
	time.Sleep(quietAfter + 5*time.Millisecond)
	p.Step() // the work of a new flush, not the slice of the old one
	if n := p.Pauses(); n != 0 {
		t.Errorf("paused %d times after a quiet spell, want 0", n)
	}
}

// TestPacerSharedPauseHoldsEveryone is why one Pacer serves all the
// background work: a goroutine that steps while another pauses waits for
// the pause to end, so the two do not take turns on the processor.
func TestPacerSharedPauseHoldsEveryone(t *testing.T) {
	p := &Pacer{Slice: time.Millisecond, Pause: 200 * time.Millisecond, MaxProcs: manyProcs, quiet: time.Hour}
	p.Step()
	time.Sleep(2 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(p.Step) // starts the pause
	for deadline := time.Now().Add(10 * time.Second); p.Pauses() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the other goroutine's Step never paused")
		}
	}
	start := time.Now()
	p.Step() // within it
	waited := time.Since(start)
	wg.Wait()
	if waited < 50*time.Millisecond {
		t.Errorf("a step during another goroutine's pause returned after %v, want it held to the pause's end (up to 200ms)", waited)
	}
	if n := p.Pauses(); n != 2 {
		t.Errorf("Pauses = %d, want 2 (the pause and the step that waited it out)", n)
	}
}

func TestPacerNilAndContext(t *testing.T) {
	var p *Pacer
	p.Step() // a nil Pacer never sleeps nor panics
	if p.Pauses() != 0 {
		t.Error("nil Pacer reports pauses")
	}
	if PacerFrom(context.Background()) != nil {
		t.Error("PacerFrom(Background) is not nil")
	}
	q := &Pacer{}
	ctx := WithPacer(context.Background(), q)
	if PacerFrom(ctx) != q {
		t.Error("PacerFrom does not return the Pacer WithPacer set")
	}
	if PacerFrom(WithPacer(ctx, nil)) != nil {
		t.Error("WithPacer(ctx, nil) does not turn pacing off")
	}
	if PacerFrom(Paced(ctx)) != q {
		t.Error("Paced replaced the Pacer ctx carries")
	}
	if PacerFrom(Paced(context.Background())) == nil {
		t.Error("Paced(Background) carries no Pacer")
	}
}

// TestPacerIdleWithSeveralProcessors: with more processors than MaxProcs,
// another one polls the network meanwhile, and Step never sleeps.
func TestPacerIdleWithSeveralProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	p := &Pacer{Slice: time.Millisecond, Pause: time.Second, quiet: time.Hour}
	p.Step()
	time.Sleep(2 * time.Millisecond)
	p.Step()
	if n := p.Pauses(); n != 0 {
		t.Errorf("paused %d times with GOMAXPROCS 2 and MaxProcs 1, want 0", n)
	}
	runtime.GOMAXPROCS(1)
	start := time.Now()
	p.Slice, p.Pause = time.Millisecond, 10*time.Millisecond
	p.Step()
	time.Sleep(2 * time.Millisecond)
	p.Step()
	if n := p.Pauses(); n != 1 || time.Since(start) < 10*time.Millisecond {
		t.Errorf("paused %d times with GOMAXPROCS 1, want 1 pause of at least 10ms (took %v)", n, time.Since(start))
	}
}
