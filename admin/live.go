package admin

import (
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// DecisionEvent is one Check's decision, as the dashboard sees it.
type DecisionEvent struct {
	Time       time.Time
	Subject    string
	Team       string
	Tier       engine.Tier
	Allowed    bool
	Reason     engine.Reason
	DecisionID uuid.UUID
	// TraceID is the hex trace id of the Check's span; empty means none.
	TraceID string
	// Used and Limit are the binding limit's usage after the decision and
	// its maximum; Limit 0 means no limit applied.
	Used, Limit int64
}

// EventOf returns the DecisionEvent of d, made at now, traced as traceID.
func EventOf(d *engine.Decision, traceID string, now time.Time) DecisionEvent {
	ev := DecisionEvent{Time: now, Subject: d.Subject, Team: d.Team, Tier: d.Tier, Allowed: d.Allowed,
		Reason: d.Reason, DecisionID: d.ID, TraceID: traceID}
	if d.HasBinding {
		ev.Used, ev.Limit = d.Binding.Used, d.Binding.Limit
	}
	return ev
}

// Observe records a decision for the dashboard. It does no I/O, never
// blocks on anything but a short mutex, and does not allocate once the
// tier, outcome and subject have been seen. It is safe for concurrent
// use; call it once per Check.
func (s *Server) Observe(ev DecisionEvent) { s.live.observe(ev) }

const (
	// liveSeconds is how many seconds of per-second counts are kept; a
	// power of two so the ring index is a mask.
	liveSeconds = 64
	// chartSeconds is how many of them the dashboard charts.
	chartSeconds = 60
	// rejectionRing is how many recent rejections are kept.
	rejectionRing = 256
	// maxTop bounds how many subjects are tracked for the top list.
	maxTop = 4096
	// topAge is how long a subject stays in the top list after it was last
	// seen.
	topAge = 10 * time.Minute
)

// rateKey is a chart series: a tier and an outcome.
type rateKey struct {
	tier   engine.Tier
	reason engine.Reason
}

// second holds one second's counts.
type second struct {
	unix   int64
	counts map[rateKey]int64
}

// usage is a subject's last seen use of its binding limit.
type usage struct {
	tier        engine.Tier
	team        string
	used, limit int64
	at          time.Time
}

// live aggregates decisions for the dashboard. It is safe for concurrent
// use.
type live struct {
	mu      sync.Mutex
	secs    [liveSeconds]second
	rej     [rejectionRing]DecisionEvent
	rejNext uint64 // rejections ever observed
	newest  int64  // the newest second counted
	top     map[string]usage
}

func newLive() *live {
	return &live{top: make(map[string]usage)}
}

func (l *live) observe(ev DecisionEvent) {
	sec := ev.Time.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.countLocked(sec, rateKey{ev.Tier, ev.Reason})
	if !ev.Allowed {
		l.rej[l.rejNext%rejectionRing] = ev
		l.rejNext++
	}
	if ev.Limit > 0 && ev.Subject != "" {
		if _, ok := l.top[ev.Subject]; !ok && len(l.top) >= maxTop {
			l.pruneTopLocked(ev.Time)
		}
		l.top[ev.Subject] = usage{tier: ev.Tier, team: ev.Team, used: ev.Used, limit: ev.Limit, at: ev.Time}
	}
}

// countLocked adds one to key's count in second sec, unless sec is older than
// the ring. The caller holds l.mu.
func (l *live) countLocked(sec int64, key rateKey) {
	if sec <= l.newest-liveSeconds {
		return // too late to chart
	}
	l.newest = max(l.newest, sec)
	b := &l.secs[sec&(liveSeconds-1)]
	if b.unix != sec {
		if b.counts == nil {
			b.counts = make(map[rateKey]int64)
		}
		clear(b.counts)
		b.unix = sec
	}
	b.counts[key]++
}

// pruneTopLocked drops subjects not seen for topAge and, if that is not
// enough, the half with the lowest use. The caller holds l.mu.
func (l *live) pruneTopLocked(now time.Time) {
	for k, u := range l.top {
		if now.Sub(u.at) > topAge {
			delete(l.top, k)
		}
	}
	if len(l.top) < maxTop {
		return
	}
	ratios := make([]float64, 0, len(l.top))
	for _, u := range l.top {
		ratios = append(ratios, u.ratio())
	}
	slices.Sort(ratios)
	median := ratios[len(ratios)/2]
	for k, u := range l.top {
		if u.ratio() <= median {
			delete(l.top, k)
		}
	}
}

func (u usage) ratio() float64 { return float64(u.used) / float64(u.limit) }
