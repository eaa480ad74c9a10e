package admin

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/notify"
)

// Sizes of the dashboard snapshot's lists.
const (
	snapshotTop        = 10
	snapshotRejections = 50
	snapshotAlerts     = 20
)

// snapshot is what the dashboard stream sends every interval.
type snapshot struct {
	Now      time.Time `json:"now"`
	TraceURL string    `json:"trace_url,omitempty"`
	// Start is the Unix second of Series' first count; each series has
	// chartSeconds counts, the last one for the current (partial) second.
	Start      int64           `json:"start"`
	Series     []seriesJSON    `json:"series"`
	Top        []topJSON       `json:"top"`
	Rejections []rejectionJSON `json:"rejections"`
	Alerts     []notify.Alert  `json:"alerts"`
	Capacity   capacityJSON    `json:"capacity"`
	// Config is the reload history, and Degraded why the server is
	// degraded ("" when it is not): the dashboard shows a refused reload
	// and a degraded server above everything else.
	Config   *ConfigStatus `json:"config,omitempty"`
	Degraded string        `json:"degraded,omitempty"`
}

type seriesJSON struct {
	Tier    string  `json:"tier"`
	Outcome string  `json:"outcome"`
	Counts  []int64 `json:"counts"`
}

type topJSON struct {
	Subject string  `json:"subject"`
	Tier    string  `json:"tier"`
	Team    string  `json:"team,omitempty"`
	Used    int64   `json:"used"`
	Limit   int64   `json:"limit"`
	Percent float64 `json:"percent"`
}

type rejectionJSON struct {
	Time       time.Time `json:"time"`
	Subject    string    `json:"subject"`
	Tier       string    `json:"tier"`
	Reason     string    `json:"reason"`
	DecisionID uuid.UUID `json:"decision_id"`
	TraceID    string    `json:"trace_id,omitempty"`
	Used       int64     `json:"used,omitempty"`
	Limit      int64     `json:"limit,omitempty"`
}

// snapshotAt copies the live state for the dashboard at now.
func (l *live) snapshotAt(now time.Time) snapshot {
	end := now.Unix()
	snap := snapshot{Now: now.UTC(), Start: end - chartSeconds + 1}
	l.mu.Lock()
	defer l.mu.Unlock()
	series := map[rateKey][]int64{}
	for i := range chartSeconds {
		sec := snap.Start + int64(i)
		b := &l.secs[sec&(liveSeconds-1)]
		if b.unix != sec {
			continue
		}
		for k, n := range b.counts {
			c := series[k]
			if c == nil {
				c = make([]int64, chartSeconds)
				series[k] = c
			}
			c[i] = n
		}
	}
	for k, c := range series {
		snap.Series = append(snap.Series, seriesJSON{Tier: string(k.tier), Outcome: k.reason.String(), Counts: c})
	}
	slices.SortFunc(snap.Series, func(a, b seriesJSON) int {
		return cmp.Or(cmp.Compare(a.Tier, b.Tier), cmp.Compare(a.Outcome, b.Outcome))
	})
	snap.Top = l.topLocked(now)
	for i := uint64(0); i < min(l.rejNext, snapshotRejections); i++ {
		ev := &l.rej[(l.rejNext-1-i)%rejectionRing]
		snap.Rejections = append(snap.Rejections, rejectionJSON{Time: ev.Time.UTC(), Subject: ev.Subject,
			Tier: string(ev.Tier), Reason: ev.Reason.String(), DecisionID: ev.DecisionID, TraceID: ev.TraceID,
			Used: ev.Used, Limit: ev.Limit})
	}
	return snap
}

// topLocked returns the subjects with the highest use of their binding
// limit, seen within topAge. The caller holds l.mu.
func (l *live) topLocked(now time.Time) []topJSON {
	out := []topJSON{}
	for subj, u := range l.top {
		if now.Sub(u.at) > topAge {
			continue
		}
		out = append(out, topJSON{Subject: subj, Tier: string(u.tier), Team: u.team, Used: u.used, Limit: u.limit,
			Percent: 100 * u.ratio()})
	}
	slices.SortFunc(out, func(a, b topJSON) int {
		return cmp.Or(cmp.Compare(b.Percent, a.Percent), cmp.Compare(a.Subject, b.Subject))
	})
	return out[:min(len(out), snapshotTop)]
}

func (s *Server) snapshot() snapshot {
	snap := s.live.snapshotAt(s.now())
	snap.TraceURL = s.cfg.TraceURL
	snap.Capacity = s.capacity()
	if s.config != nil {
		c := s.config()
		snap.Config = &c
	}
	if s.degrade != nil {
		snap.Degraded = s.degrade()
	}
	snap.Alerts = s.recentAlerts(principal{}, snapshotAlerts)
	if snap.Series == nil {
		snap.Series = []seriesJSON{}
	}
	if snap.Rejections == nil {
		snap.Rejections = []rejectionJSON{}
	}
	return snap
}

// stream serves the dashboard's Server-Sent Events: a "snapshot" event at
// once and every interval, and an "alert" event for each new alert, until
// the client goes or the server shuts down.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, _ principal) error {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream has no end; not every writer supports deadlines
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	var alerts <-chan notify.Alert
	if s.alerts != nil {
		alerts = s.alerts.Subscribe(ctx)
	}
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return nil
	}
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		if err := sendEvent(w, rc, "snapshot", s.snapshot()); err != nil {
			return nil // the client has gone
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case a, ok := <-alerts:
			if !ok {
				alerts = nil
				continue
			}
			if err := sendEvent(w, rc, "alert", a); err != nil {
				return nil
			}
		}
	}
}

func sendEvent(w http.ResponseWriter, rc *http.ResponseController, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return rc.Flush()
}
