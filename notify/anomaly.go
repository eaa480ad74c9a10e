package notify

import (
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/quotagate/quotagate/engine"
)

// detector finds subjects whose request count in the current window is far
// above their own baseline. The baseline is an exponentially weighted moving
// average of the subject's past window counts. State is lock-striped: each
// shard holds an LRU of subjects under its own mutex, and nothing slow
// happens under it. It is safe for concurrent use.
type detector struct {
	window    int64   // window length in nanoseconds
	factor    float64 // how many times the baseline is anomalous
	minCount  float64 // MinRate × window: counts below it are never reported
	warmUp    int     // windows of history needed before reporting
	smoothing float64 // EWMA weight of the newest window
	seed      maphash.Seed
	mask      uint64
	shards    []anomalyShard
}

type anomalyShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *rateState]
	_   [40]byte // keep neighbouring shards' mutexes off one cache line
}

// rateState is one subject's counting state.
type rateState struct {
	window   int64   // index of the current window (Unix ns / window length)
	count    float64 // requests in the current window so far
	baseline float64 // EWMA of past windows' counts
	seen     int     // past windows folded into baseline (capped at warmUp)
	alerted  int64   // window index of the last anomaly reported, or -1
}

// anomaly is what observe reports: the window and the numbers behind it.
type anomaly struct {
	windowStart time.Time
	count       float64
	baseline    float64
}

func newDetector(c AnomalyConfig) *detector {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) || n < 16 {
		n <<= 1
	}
	perShard := max(c.MaxSubjects/n, 1)
	d := &detector{
		window:    int64(c.Window),
		factor:    c.Factor,
		minCount:  c.MinRate * c.Window.Seconds(),
		warmUp:    max(c.WarmUp, 1),
		smoothing: c.Smoothing,
		seed:      maphash.MakeSeed(),
		mask:      uint64(n - 1),
		shards:    make([]anomalyShard, n),
	}
	for i := range d.shards {
		// NewLRU fails only for a size below 1, which max rules out.
		d.shards[i].lru, _ = simplelru.NewLRU[string, *rateState](perShard, nil)
	}
	return d
}

// observe counts one request by subject at now and reports whether it made
// the current window anomalous for the first time.
func (d *detector) observe(subject string, now time.Time) (anomaly, bool) {
	sh := &d.shards[maphash.String(d.seed, subject)&d.mask]
	w := now.UnixNano() / d.window
	sh.mu.Lock()
	st, ok := sh.lru.Get(subject)
	if !ok {
		st = &rateState{window: w, alerted: -1}
		sh.lru.Add(subject, st)
	}
	a, found := d.countLocked(st, w)
	sh.mu.Unlock()
	if found {
		a.windowStart = time.Unix(0, w*d.window).UTC()
	}
	return a, found
}

// countLocked advances st to window w, counts one request and checks the
// window against the baseline. The caller holds the shard's lock.
func (d *detector) countLocked(st *rateState, w int64) (anomaly, bool) {
	if w > st.window {
		d.rollLocked(st, w)
	}
	st.count++
	if st.seen < d.warmUp || st.alerted == w || st.count < d.minCount {
		return anomaly{}, false
	}
	if st.count <= d.factor*st.baseline {
		return anomaly{}, false
	}
	st.alerted = w
	return anomaly{count: st.count, baseline: st.baseline}, true
}

// rollLocked folds the finished window, and any empty windows after it,
// into the baseline. The caller holds the shard's lock.
func (d *detector) rollLocked(st *rateState, w int64) {
	if st.seen == 0 {
		st.baseline = st.count
	} else {
		st.baseline += d.smoothing * (st.count - st.baseline)
	}
	empty := w - st.window - 1
	if empty > 0 {
		st.baseline *= math.Pow(1-d.smoothing, float64(min(empty, 1<<20)))
	}
	st.seen = int(min(int64(st.seen)+1+empty, int64(d.warmUp)))
	st.window = w
	st.count = 0
}

// anomalyAlert builds the alert for an anomaly of subject.
func anomalyAlert(subject string, tier engine.Tier, now time.Time, a anomaly) Alert {
	return Alert{
		Kind:     KindAnomaly,
		Time:     now,
		Subject:  subject,
		Tier:     tier,
		Window:   a.windowStart,
		Count:    a.count,
		Baseline: math.Round(a.baseline*100) / 100,
	}
}
