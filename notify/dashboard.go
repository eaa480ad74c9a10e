package notify

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// subscriberBuffer is how many alerts a subscriber may fall behind before
// alerts to it are dropped.
const subscriberBuffer = 64

// feed is the dashboard channel: a ring buffer of recent alerts and a set
// of live subscribers. It is safe for concurrent use.
type feed struct {
	mu    sync.Mutex
	ring  []Alert // ring[(next-1) % len] is the newest
	next  int     // total alerts ever published
	subs  map[*subscriber]struct{}
	stats *channelCounters
	slow  atomic.Uint64 // alerts a slow subscriber missed
}

type subscriber struct {
	ch chan Alert
}

func newFeed(size int, stats *channelCounters) *feed {
	return &feed{ring: make([]Alert, size), subs: make(map[*subscriber]struct{}), stats: stats}
}

// publish adds a to the ring and hands it to every subscriber that has
// room; it never blocks.
func (f *feed) publish(a Alert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ring[f.next%len(f.ring)] = a
	f.next++
	for s := range f.subs {
		select {
		case s.ch <- a:
		default:
			f.slow.Add(1)
		}
	}
	f.stats.sent.Add(1)
}

// recent returns up to n alerts, newest first. n <= 0 means all kept.
func (f *feed) recent(n int) []Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	have := min(f.next, len(f.ring))
	if n <= 0 || n > have {
		n = have
	}
	out := make([]Alert, n)
	for i := range n {
		out[i] = f.ring[(f.next-1-i)%len(f.ring)]
	}
	return out
}

// ack marks the alert with id acknowledged at now and reports whether it
// is still in the ring.
func (f *feed) ack(id uuid.UUID, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range min(f.next, len(f.ring)) {
		a := &f.ring[(f.next-1-i)%len(f.ring)]
		if a.ID == id {
			if !a.Acked {
				a.Acked, a.AckedAt = true, now
			}
			return true
		}
	}
	return false
}

// subscribe returns a channel of alerts published from now on. The channel
// is closed when ctx is done.
func (f *feed) subscribe(ctx context.Context) <-chan Alert {
	s := &subscriber{ch: make(chan Alert, subscriberBuffer)}
	f.mu.Lock()
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		delete(f.subs, s)
		close(s.ch)
		f.mu.Unlock()
	})
	return s.ch
}
