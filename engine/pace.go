package engine

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Pacer breaks a long run of background work (a flush, a ledger block, a
// fold) into slices, with a short pause between them, so that Checks are
// not kept waiting behind it.
//
// The Go scheduler gives a running goroutine its processor until it blocks
// or has run for 10 ms, and it looks for network input only when nothing
// else is runnable. A server pinned to one core (GOMAXPROCS 1) therefore
// reads no request while a flush runs: a flush of 5 ms every 100 ms put
// every twentieth Check 5 ms late. runtime.Gosched does not help, because
// the yielding goroutine is itself runnable and is picked again before the
// network is polled.
//
// A timed sleep did not suffice either. While the Checks read before the
// pause still run, nothing polls the network, and the sleep's timer makes
// the work runnable again when it fires, before the scheduler has run out
// of work to do. Under load a burst of background work then went on for up
// to 10 ms, in slices, with no new request read, until the runtime's
// monitor polled the network. So a pause waits on the network poller
// itself (see yield): it ends when Pause has passed and the scheduler has
// polled the network, which also makes the requests that arrived
// meanwhile runnable. Where that is not available, a pause is a sleep.
//
// One Pacer is shared by all the background work of a process: its
// pauses are meant to leave nothing but Checks runnable. Two goroutines
// pacing themselves apart took turns instead, one working while the
// other slept, and the network went unpolled as before. So a Step that
// falls in another goroutine's pause waits until it ends, and a slice
// counts the work of every goroutine that steps.
//
// With more than one processor another one polls the network while the
// background work runs, and pausing would only slow the work: Step paces
// only while GOMAXPROCS is at most MaxProcs (1 by default), which is what
// Go picks for a process limited to one core (taskset, or a CPU limit of
// one in a container).
//
// Step costs a clock read and an uncontended lock; it pauses only once a
// slice has been used, so short runs of work never pause. A nil *Pacer
// never pauses.
type Pacer struct {
	// Slice is the work done between pauses; zero means 200µs.
	Slice time.Duration
	// Pause is how long each pause lasts at least; zero means 100µs. It
	// lasts until the network has been polled too: while Checks keep the
	// processor busy, up to 10 ms (the runtime's monitor polls then).
	Pause time.Duration
	// MaxProcs is the largest GOMAXPROCS at which Step paces; zero
	// means 1.
	MaxProcs int
	// quiet overrides quietAfter, for tests whose sleeps stand in for
	// work and may oversleep on a loaded machine.
	quiet time.Duration

	mu      sync.Mutex
	began   time.Time     // the current slice's start
	last    time.Time     // the last Step, by any goroutine
	pausing chan struct{} // closed when the current pause ends; nil between pauses
	pauses  atomic.Int64
}

// quietAfter is how long without a Step ends a run of work: the next
// Step starts a fresh slice rather than pausing at once.
const quietAfter = 5 * time.Millisecond

// Step marks a point where the work may pause: it pauses when the
// current slice has been used, and waits out another goroutine's pause.
func (p *Pacer) Step() {
	if p == nil || runtime.GOMAXPROCS(0) > max(p.MaxProcs, 1) {
		return
	}
	slice, pause := p.Slice, p.Pause
	if slice <= 0 {
		slice = 200 * time.Microsecond
	}
	if pause <= 0 {
		pause = 100 * time.Microsecond
	}
	quiet := p.quiet
	if quiet <= 0 {
		quiet = quietAfter
	}
	now := time.Now()
	p.mu.Lock()
	if ch := p.pausing; ch != nil {
		p.mu.Unlock()
		p.pauses.Add(1)
		<-ch
		return
	}
	switch {
	case p.began.IsZero() || now.Sub(p.last) > quiet:
		p.began = now
	case now.Sub(p.began) >= slice:
		ch := make(chan struct{})
		p.pausing = ch
		p.mu.Unlock()
		p.pauses.Add(1)
		yield(pause)
		p.mu.Lock()
		p.pausing = nil
		p.began = time.Now() // a fresh slice from the pause's end
		p.last = p.began
		p.mu.Unlock()
		close(ch)
		return
	}
	p.last = now
	p.mu.Unlock()
}

// Pauses reports how many times Step has slept.
func (p *Pacer) Pauses() int64 {
	if p == nil {
		return 0
	}
	return p.pauses.Load()
}

type pacerKey struct{}

// WithPacer returns ctx carrying p, for the code that does the work ctx
// is passed to (a Store's Save, a ledger append) to pace itself with.
func WithPacer(ctx context.Context, p *Pacer) context.Context {
	return context.WithValue(ctx, pacerKey{}, p)
}

// Paced returns ctx if it carries a Pacer, else ctx carrying a new one:
// for a background loop whose work must be paced even when its caller
// shares no Pacer with it.
func Paced(ctx context.Context) context.Context {
	if PacerFrom(ctx) != nil {
		return ctx
	}
	return WithPacer(ctx, &Pacer{})
}

// PacerFrom returns the Pacer ctx carries, or nil: work done for a caller
// that is waiting on it (a synchronous flush, an admin call) is not paced:
// give it WithPacer(ctx, nil).
func PacerFrom(ctx context.Context) *Pacer {
	p, _ := ctx.Value(pacerKey{}).(*Pacer)
	return p
}
