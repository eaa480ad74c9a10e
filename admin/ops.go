package admin

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/notify"
)

// tierJSON is one tier in GET /v1/tiers.
type tierJSON struct {
	Name        string      `json:"name"`
	Default     bool        `json:"default,omitempty"`
	Priority    string      `json:"priority"`
	Limits      []limitJSON `json:"limits"`
	Tokens      tokensJSON  `json:"tokens"`
	Features    []string    `json:"features,omitempty"`
	MaxDelay    string      `json:"max_delay,omitempty"`
	FailureMode string      `json:"failure_mode"`
	UpgradeURL  string      `json:"upgrade_url,omitempty"`
}

type tokensJSON struct {
	Amount    int64  `json:"amount,omitempty"`
	Period    string `json:"period,omitempty"`
	Unlimited bool   `json:"unlimited,omitempty"`
}

// tiersOf lists cfg's tiers by priority, then name.
func tiersOf(cfg engine.Rules) []tierJSON {
	out := make([]tierJSON, 0, len(cfg.Tiers))
	for name, t := range cfg.Tiers {
		j := tierJSON{Name: string(name), Default: name == cfg.DefaultTier, Priority: t.Priority.String(),
			Limits: []limitJSON{}, Features: t.Features, FailureMode: t.FailureMode.String(), UpgradeURL: t.UpgradeURL}
		for _, l := range t.Limits {
			j.Limits = append(j.Limits, limitToJSON(l))
		}
		if t.Tokens.Amount > 0 || t.Tokens.Unlimited {
			j.Tokens = tokensJSON{Amount: t.Tokens.Amount, Period: t.Tokens.Period.String(), Unlimited: t.Tokens.Unlimited}
		}
		if t.MaxDelay > 0 {
			j.MaxDelay = t.MaxDelay.String()
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b tierJSON) int {
		pa, _ := engine.ParsePriority(a.Priority)
		pb, _ := engine.ParsePriority(b.Priority)
		return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func (s *Server) getTiers(w http.ResponseWriter, _ *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, map[string]any{"tiers": tiersOf(s.eng.Rules())})
	return nil
}

// ConfigStatus is the configuration's source and reload history, served
// at GET /v1/config (and by quotagate on the ops port's /status).
type ConfigStatus struct {
	// Source is the file served, or the embedded default.
	Source string `json:"source"`
	// Generation counts the reloads applied since start, Failures those
	// refused.
	Generation uint64 `json:"generation"`
	Failures   uint64 `json:"failures"`
	// LastAttempt and LastSuccess are the times of the last reload tried
	// and of the last one applied.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError says why the last reload was refused, with the exact
	// fields at fault; empty when it was applied. The previous
	// configuration serves meanwhile.
	LastError string `json:"last_error,omitempty"`
}

func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request, _ principal) error {
	if s.config == nil {
		return errorf(http.StatusServiceUnavailable, "this server does not report its configuration's reloads")
	}
	writeJSON(w, http.StatusOK, s.config())
	return nil
}

// capacityJSON is GET /v1/capacity.
type capacityJSON struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	Factor            float64 `json:"factor"`
	AdmittedRate      float64 `json:"admitted_rate"`
	Utilization       float64 `json:"utilization"`
}

func (s *Server) capacity() capacityJSON {
	c := s.eng.Capacity()
	return capacityJSON{RequestsPerSecond: c.RequestsPerSecond, Factor: c.Factor, AdmittedRate: c.AdmittedRate, Utilization: c.Utilization}
}

func (s *Server) getCapacity(w http.ResponseWriter, _ *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, s.capacity())
	return nil
}

// capacityBody is the body of PUT /v1/capacity; absent fields are kept.
type capacityBody struct {
	RequestsPerSecond *float64 `json:"requests_per_second"`
	Factor            *float64 `json:"factor"`
}

func (s *Server) putCapacity(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.requireLedger(); err != nil {
		return err
	}
	var body capacityBody
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.RequestsPerSecond == nil && body.Factor == nil {
		return errorf(http.StatusBadRequest, "give requests_per_second, factor or both")
	}
	if v := body.RequestsPerSecond; v != nil && (*v < 0 || math.IsInf(*v, 0) || math.IsNaN(*v)) {
		return errorf(http.StatusBadRequest, "requests_per_second must be a finite number >= 0 (0 turns shedding off), got %g", *v)
	}
	if v := body.Factor; v != nil && (*v <= 0 || math.IsInf(*v, 0) || math.IsNaN(*v)) {
		return errorf(http.StatusBadRequest, "factor must be a finite number > 0 (0.5 halves every limit), got %g", *v)
	}
	// Both changes are recorded in one append before either is made, so
	// that the ledger cannot refuse one half of them.
	old := s.eng.Capacity()
	now := s.now()
	var recs []ledger.Record
	add := func(what string, before, after float64) error {
		rec, err := ledger.NewAdminChange(now, p.name, "", what, fmtFloat(before), fmtFloat(after))
		recs = append(recs, rec)
		return err
	}
	if v := body.RequestsPerSecond; v != nil {
		if err := add("capacity", old.RequestsPerSecond, *v); err != nil {
			return err
		}
	}
	if v := body.Factor; v != nil {
		if err := add("capacity_factor", old.Factor, *v); err != nil {
			return err
		}
	}
	if err := s.led.Append(context.WithoutCancel(r.Context()), recs); err != nil {
		return &httpError{Code: http.StatusServiceUnavailable, Msg: "the ledger could not record the change, so it was not made (nothing was changed); retry later", Err: err}
	}
	// Both values were checked above, which is all the engine checks.
	if v := body.RequestsPerSecond; v != nil {
		if err := s.eng.SetCapacity(*v); err != nil {
			return engineError(err)
		}
	}
	if v := body.Factor; v != nil {
		if err := s.eng.SetCapacityFactor(*v); err != nil {
			return engineError(err)
		}
	}
	s.log.Info("admin: capacity changed", "actor", p.name, "requests_per_second", body.RequestsPerSecond, "factor", body.Factor)
	writeJSON(w, http.StatusOK, s.capacity())
	return nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// maxAlerts bounds GET /v1/alerts.
const maxAlerts = 1000

func (s *Server) getAlerts(w http.ResponseWriter, r *http.Request, p principal) error {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxAlerts {
			return errorf(http.StatusBadRequest, "limit must be a whole number from 1 to %d, got %q", maxAlerts, v)
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": s.recentAlerts(p, limit)})
	return nil
}

// recentAlerts returns up to limit alerts that p may see, newest first.
func (s *Server) recentAlerts(p principal, limit int) []notify.Alert {
	out := []notify.Alert{}
	if s.alerts == nil {
		return out
	}
	n := limit
	if p.team != "" {
		n = 0 // filter all kept, then cut
	}
	for _, a := range s.alerts.Recent(n) {
		if p.mayTouchTeam(a.Team) {
			out = append(out, a)
		}
		if len(out) == limit {
			break
		}
	}
	return out
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request, p principal) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return errorf(http.StatusBadRequest, "invalid alert id %q: want a UUID", r.PathValue("id"))
	}
	if s.alerts == nil {
		return errorf(http.StatusNotFound, "unknown alert %s: no alert feed is configured", id)
	}
	if p.team != "" {
		recent := s.alerts.Recent(0)
		i := slices.IndexFunc(recent, func(a notify.Alert) bool { return a.ID == id })
		if i < 0 {
			return errorf(http.StatusNotFound, "unknown alert %s", id)
		}
		if !p.mayTouchTeam(recent[i].Team) {
			return errorf(http.StatusForbidden, "token %q is restricted to team %q, and alert %s is not about it", p.name, p.team, id)
		}
	}
	if err := s.alerts.Ack(id); err != nil {
		if errors.Is(err, notify.ErrUnknownAlert) {
			return errorf(http.StatusNotFound, "unknown alert %s: it may have left the feed", id)
		}
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "acked": true})
	return nil
}

func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, p principal) error {
	if s.led == nil {
		return errorf(http.StatusServiceUnavailable, "no ledger is configured: usage reports come from the ledger")
	}
	q, err := s.usageQuery(r, p)
	if err != nil {
		return err
	}
	rows, err := s.led.Usage(r.Context(), q)
	if err != nil {
		return &httpError{Code: http.StatusServiceUnavailable, Msg: "the ledger could not answer; retry later", Err: err}
	}
	if rows == nil {
		rows = []ledger.Row{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"subject": q.Subject, "team": q.Team, "tier": q.Tier, "by": q.By.String(),
		"from": q.From, "to": q.To, "rows": rows,
	})
	return nil
}

// usageQuery parses ?subject=&team=&tier=&by=&from=&to= and checks that p
// may see it: a team-restricted token must ask for its team or a member.
func (s *Server) usageQuery(r *http.Request, p principal) (ledger.Query, error) {
	v := r.URL.Query()
	q := ledger.Query{Subject: v.Get("subject"), Team: v.Get("team"), Tier: v.Get("tier")}
	if by := v.Get("by"); by != "" {
		g, err := ledger.ParseGrain(by)
		if err != nil {
			return q, errorf(http.StatusBadRequest, "by: want hour, day or month, got %q", by)
		}
		q.By = g
	}
	q.To = s.now().UTC()
	if err := parseTime(v.Get("to"), "to", &q.To); err != nil {
		return q, err
	}
	q.From = q.To.Add(-[...]time.Duration{ledger.GrainHour: 24 * time.Hour, ledger.GrainDay: 30 * 24 * time.Hour,
		ledger.GrainMonth: 365 * 24 * time.Hour}[q.By])
	if err := parseTime(v.Get("from"), "from", &q.From); err != nil {
		return q, err
	}
	if q.From.After(q.To) {
		return q, errorf(http.StatusBadRequest, "from (%s) is after to (%s)", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	if p.team == "" {
		return q, nil
	}
	switch {
	case q.Subject != "":
		st, err := s.eng.Status(r.Context(), q.Subject)
		if err != nil {
			return q, engineError(err)
		}
		if st.Team != p.team {
			return q, errorf(http.StatusForbidden, "token %q is restricted to team %q, and subject %q is not a member", p.name, p.team, q.Subject)
		}
	case q.Team != p.team:
		return q, errorf(http.StatusForbidden, "token %q is restricted to team %q: add team=%s or a member's subject=", p.name, p.team, p.team)
	}
	return q, nil
}

func parseTime(v, name string, dst *time.Time) error {
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return errorf(http.StatusBadRequest, "%s: want an RFC 3339 time such as 2026-11-27T10:00:00Z, got %q", name, v)
	}
	*dst = t.UTC()
	return nil
}
