package admin

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// limitJSON is a limit's configuration in the API.
type limitJSON struct {
	Name    string   `json:"name,omitempty"`
	Period  string   `json:"period"`
	Max     int64    `json:"max"`
	Unit    string   `json:"unit,omitempty"`
	Mode    string   `json:"mode,omitempty"`
	Actions []string `json:"actions,omitempty"`
}

// limitStatusJSON is a limit's state in the API.
type limitStatusJSON struct {
	Name      string    `json:"name"`
	Period    string    `json:"period"`
	Limit     int64     `json:"limit"`
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	Reset     time.Time `json:"reset"`
}

// balanceJSON is a balance in the API.
type balanceJSON struct {
	Owner      string `json:"owner"`
	Balance    int64  `json:"balance"`
	Allowance  int64  `json:"allowance"`
	Credits    int64  `json:"credits"`
	HasBalance bool   `json:"has_balance"`
}

// profileJSON is a subject's run-time profile in the API.
type profileJSON struct {
	Tier   string      `json:"tier,omitempty"`
	Roles  []string    `json:"roles,omitempty"`
	Team   string      `json:"team,omitempty"`
	Limits []limitJSON `json:"limits,omitempty"`
}

// subjectJSON is GET /v1/subjects/{id}.
type subjectJSON struct {
	Subject  string            `json:"subject"`
	Team     string            `json:"team,omitempty"`
	Tier     string            `json:"tier"`
	Priority string            `json:"priority"`
	Limits   []limitStatusJSON `json:"limits"`
	Balance  balanceJSON       `json:"balance"`
	Profile  profileJSON       `json:"profile"`
	// ProfileProblem says why the stored profile no longer validates (a
	// reload removed what it names, say); Checks then ignore it but for
	// its tier until a PUT or PATCH repairs it. Empty when it validates.
	ProfileProblem string `json:"profile_problem,omitempty"`
}

func limitToJSON(l engine.LimitConfig) limitJSON {
	j := limitJSON{Name: l.Name, Period: l.Period.String(), Max: l.Max, Unit: l.Unit.String(), Actions: l.Actions}
	if l.Mode != nil {
		j.Mode = l.Mode.String()
	}
	return j
}

// limitFromJSON converts j; path names it in errors.
func limitFromJSON(j limitJSON, path string) (engine.LimitConfig, error) {
	bad := func(err error) error {
		return errorf(http.StatusBadRequest, "%s: %v", path, err)
	}
	per, err := engine.ParsePeriod(j.Period)
	if err != nil {
		return engine.LimitConfig{}, bad(err)
	}
	unit, err := engine.ParseUnit(j.Unit)
	if err != nil {
		return engine.LimitConfig{}, bad(err)
	}
	l := engine.LimitConfig{Name: j.Name, Period: per, Max: j.Max, Unit: unit, Actions: slices.Clone(j.Actions)}
	if j.Mode != "" {
		m, err := engine.ParseWindowMode(j.Mode)
		if err != nil {
			return engine.LimitConfig{}, bad(err)
		}
		l.Mode = &m
	}
	return l, nil
}

func statusesToJSON(ls []engine.LimitStatus) []limitStatusJSON {
	out := make([]limitStatusJSON, len(ls))
	for i, l := range ls {
		out[i] = limitStatusJSON{Name: l.Name, Period: l.Period.String(), Limit: l.Limit, Used: l.Used,
			Remaining: l.Remaining, Reset: l.Reset.UTC()}
	}
	return out
}

func profileToJSON(p engine.Profile) profileJSON {
	j := profileJSON{Tier: string(p.Tier), Roles: p.Roles, Team: p.Team}
	for _, l := range p.Limits {
		j.Limits = append(j.Limits, limitToJSON(l))
	}
	return j
}

func profileFromJSON(j profileJSON) (engine.Profile, error) {
	p := engine.Profile{Tier: engine.Tier(j.Tier), Roles: slices.Clone(j.Roles), Team: j.Team}
	for i, lj := range j.Limits {
		l, err := limitFromJSON(lj, fmt.Sprintf("limits[%d]", i))
		if err != nil {
			return engine.Profile{}, err
		}
		p.Limits = append(p.Limits, l)
	}
	return p, nil
}

func subjectToJSON(st engine.SubjectStatus) subjectJSON {
	return subjectJSON{
		Subject: st.Subject, Team: st.Team, Tier: string(st.Tier), Priority: st.Priority.String(),
		Limits:         statusesToJSON(st.Limits),
		Balance:        balanceToJSON(st),
		Profile:        profileToJSON(st.Profile),
		ProfileProblem: st.ProfileProblem,
	}
}

func balanceToJSON(st engine.SubjectStatus) balanceJSON {
	return balanceJSON{Owner: st.BalanceOwner, Balance: st.Balance, Allowance: st.Allowance,
		Credits: st.Credits, HasBalance: st.HasBalance}
}
