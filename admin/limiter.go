package admin

import (
	"sync"
	"time"
)

// maxTrackedClients bounds the failure limiter's memory.
const maxTrackedClients = 10_000

// failLimiter counts failed authentications per client in fixed windows
// and blocks a client that reaches the maximum until its window ends. It
// is safe for concurrent use.
type failLimiter struct {
	max    int
	window time.Duration

	mu      sync.Mutex
	clients map[string]failCount
}

type failCount struct {
	start time.Time
	n     int
}

func newFailLimiter(max int, window time.Duration) *failLimiter {
	return &failLimiter{max: max, window: window, clients: make(map[string]failCount)}
}

// blocked reports whether client may not try to authenticate at now, and
// for how long it must wait.
func (l *failLimiter) blocked(client string, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, found := l.clients[client]
	if !found || now.Sub(c.start) >= l.window || c.n < l.max {
		return 0, false
	}
	return c.start.Add(l.window).Sub(now), true
}

// fail counts a failed authentication by client at now.
func (l *failLimiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, found := l.clients[client]
	if !found || now.Sub(c.start) >= l.window {
		if !found && len(l.clients) >= maxTrackedClients {
			l.pruneLocked(now)
		}
		c = failCount{start: now}
	}
	c.n++
	l.clients[client] = c
}

// pruneLocked forgets clients whose window has ended and, if that is not
// enough, arbitrary others: a flood of addresses must not grow the map
// without bound. The caller holds l.mu.
func (l *failLimiter) pruneLocked(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.start) >= l.window {
			delete(l.clients, k)
		}
	}
	for k := range l.clients {
		if len(l.clients) < maxTrackedClients {
			break
		}
		delete(l.clients, k)
	}
}
