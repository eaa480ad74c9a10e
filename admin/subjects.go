package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
)

const teamPrefix = "team:"

// engineError maps an engine error to the client's view of it.
func engineError(err error) error {
	switch {
	case errors.Is(err, engine.ErrUnknownTier), errors.Is(err, engine.ErrInvalidConfig),
		errors.Is(err, engine.ErrUnknownSubject), errors.Is(err, engine.ErrNegativeBalance),
		errors.Is(err, engine.ErrInvalidProfile), errors.Is(err, engine.ErrInvalidSubject),
		errors.Is(err, engine.ErrQuantityTooLarge), errors.Is(err, engine.ErrNoBalance):
		return &httpError{Code: http.StatusBadRequest, Msg: clientText(err), Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &httpError{Code: http.StatusServiceUnavailable, Msg: "the request was cancelled or timed out", Err: err}
	}
	return err
}

// clientText is an engine error as a client reads it: one line, without
// the package prefixes.
func clientText(err error) string {
	return strings.NewReplacer("engine: ", "", "\n", "; ").Replace(err.Error())
}

// subjectID returns the subject id in the request path, if it is one
// (engine.ValidateSubjectID).
func subjectID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if strings.HasPrefix(id, teamPrefix) {
		return "", errorf(http.StatusBadRequest, "invalid subject id %q: use /v1/teams/{name} for a team", id)
	}
	if err := engine.ValidateSubjectID(id); err != nil {
		return "", &httpError{Code: http.StatusBadRequest, Msg: clientText(err), Err: err}
	}
	return id, nil
}

// subjectFor returns the status of the subject in the request path, if it
// exists and p may touch it. A subject exists when the configuration
// names it or it has state (it was charged, or given a profile or
// credits); any other id answers 404, except to a read (read set) while
// the unknown_subjects policy serves unknown subjects on the default
// tier: the read then shows the state the subject starts with, and
// creates none.
func (s *Server) subjectFor(r *http.Request, p principal, read bool) (engine.SubjectStatus, error) {
	id, err := subjectID(r)
	if err != nil {
		return engine.SubjectStatus{}, err
	}
	known, err := s.eng.Known(r.Context(), id)
	if err != nil {
		return engine.SubjectStatus{}, engineError(err)
	}
	if !known && (!read || s.eng.Rules().DenyUnknown) {
		return engine.SubjectStatus{}, unknownSubject(id)
	}
	st, err := s.eng.Status(r.Context(), id)
	if err != nil {
		return engine.SubjectStatus{}, engineError(err)
	}
	if !p.mayTouchTeam(st.Team) {
		return engine.SubjectStatus{}, errorf(http.StatusForbidden, "token %q is restricted to team %q, and subject %q is not a member", p.name, p.team, id)
	}
	return st, nil
}

func unknownSubject(id string) error {
	return errorf(http.StatusNotFound, "unknown subject %q: it is not configured and was never seen; PUT /v1/subjects/{id}/profile creates it", id)
}

func (s *Server) getSubject(w http.ResponseWriter, r *http.Request, p principal) error {
	st, err := s.subjectFor(r, p, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, subjectToJSON(st))
	return nil
}

// putProfile replaces a subject's profile; it is the one call that
// creates a subject the engine does not know yet.
func (s *Server) putProfile(w http.ResponseWriter, r *http.Request, p principal) error {
	var j profileJSON
	if err := decodeBody(r, &j); err != nil {
		return err
	}
	return s.changeProfile(w, r, p, true, func(engine.Profile) (engine.Profile, error) { return profileFromJSON(j) })
}

// profilePatch is the body of PATCH /v1/subjects/{id}/profile: the fields
// present replace the current ones.
type profilePatch struct {
	Tier   *string      `json:"tier"`
	Roles  *[]string    `json:"roles"`
	Team   *string      `json:"team"`
	Limits *[]limitJSON `json:"limits"`
}

func (s *Server) patchProfile(w http.ResponseWriter, r *http.Request, p principal) error {
	var patch profilePatch
	if err := decodeBody(r, &patch); err != nil {
		return err
	}
	return s.changeProfile(w, r, p, false, func(cur engine.Profile) (engine.Profile, error) {
		j := profileToJSON(cur)
		if patch.Tier != nil {
			j.Tier = *patch.Tier
		}
		if patch.Roles != nil {
			j.Roles = *patch.Roles
		}
		if patch.Team != nil {
			j.Team = *patch.Team
		}
		if patch.Limits != nil {
			j.Limits = *patch.Limits
		}
		return profileFromJSON(j)
	})
}

// changeProfile sets the profile that change derives from the current one,
// records the change in the ledger and answers with the new status. The
// new profile is validated by the engine's rules (ValidateProfile) and
// the change recorded before it is made, so a change that is refused, or
// that the ledger cannot record, changes nothing. With create set, a
// subject the engine does not know yet is created; otherwise it answers
// 404.
func (s *Server) changeProfile(w http.ResponseWriter, r *http.Request, p principal, create bool,
	change func(engine.Profile) (engine.Profile, error)) error {
	if err := s.requireLedger(); err != nil {
		return err
	}
	st, err := s.subjectFor(r, p, false)
	var he *httpError
	switch {
	case err == nil:
	case create && errors.As(err, &he) && he.Code == http.StatusNotFound:
		// A new subject: it has no profile and is in no team yet.
		st = engine.SubjectStatus{Subject: r.PathValue("id")}
	default:
		return err
	}
	next, err := change(st.Profile)
	if err != nil {
		return err
	}
	if p.team != "" && next.Team != p.team && (next.Team != "" || st.Team != p.team) {
		return errorf(http.StatusForbidden, "token %q is restricted to team %q and cannot move %q to team %q", p.name, p.team, st.Subject, next.Team)
	}
	if err := s.eng.ValidateProfile(st.Subject, next); err != nil {
		return engineError(err)
	}
	ctx := r.Context()
	before, after := profileText(st.Profile), profileText(next)
	if err := s.record(ctx, p, st.Subject, "profile", before, after); err != nil {
		return err
	}
	if err := s.eng.SetProfile(ctx, st.Subject, next); err != nil {
		s.recordUndone(ctx, p, st.Subject, "profile", after, before, err)
		return engineError(err)
	}
	s.log.Info("admin: profile changed", "actor", p.name, "subject", st.Subject, "before", before, "after", after)
	now, err := s.eng.Status(ctx, st.Subject)
	if err != nil {
		return engineError(err)
	}
	writeJSON(w, http.StatusOK, subjectToJSON(now))
	return nil
}

func profileText(p engine.Profile) string {
	b, err := json.Marshal(profileToJSON(p))
	if err != nil {
		return "?"
	}
	return string(b)
}

// creditsBody is the body of POST .../credits.
type creditsBody struct {
	// Delta is added to the credits: positive tops up, negative adjusts down.
	Delta int64 `json:"delta"`
}

// creditsJSON answers POST .../credits.
type creditsJSON struct {
	Owner   string `json:"owner"`
	Delta   int64  `json:"delta"`
	Before  int64  `json:"balance_before"`
	Balance int64  `json:"balance"`
}

func (s *Server) postSubjectCredits(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.requireLedger(); err != nil {
		return err
	}
	st, err := s.subjectFor(r, p, false)
	if err != nil {
		return err
	}
	return s.addCredits(w, r, p, st.Subject)
}

func (s *Server) postTeamCredits(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.requireLedger(); err != nil {
		return err
	}
	name, err := s.teamFor(r, p)
	if err != nil {
		return err
	}
	return s.addCredits(w, r, p, teamPrefix+name)
}

// addCredits adds the body's delta to key's credits. The delta is checked
// (engine.PreviewCredits) and recorded in the ledger before it is made,
// so a delta that is refused, or that the ledger cannot record, changes
// nothing.
func (s *Server) addCredits(w http.ResponseWriter, r *http.Request, p principal, key string) error {
	var body creditsBody
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Delta == 0 {
		return errorf(http.StatusBadRequest, "delta must not be 0: give a positive delta to top up, a negative one to adjust down")
	}
	if body.Delta < -engine.MaxCredits || body.Delta > engine.MaxCredits {
		return errorf(http.StatusBadRequest, "delta must be between -%d and %d, got %d", engine.MaxCredits, engine.MaxCredits, body.Delta)
	}
	ctx := r.Context()
	before, after, err := s.eng.PreviewCredits(ctx, key, body.Delta)
	if err != nil {
		return engineError(err)
	}
	if err := s.record(ctx, p, key, "credits", strconv.FormatInt(before, 10), strconv.FormatInt(after, 10)); err != nil {
		return err
	}
	balance, err := s.eng.AddCredits(ctx, key, body.Delta)
	if err != nil {
		s.recordUndone(ctx, p, key, "credits", strconv.FormatInt(after, 10), strconv.FormatInt(before, 10), err)
		return engineError(err)
	}
	s.log.Info("admin: credits changed", "actor", p.name, "key", key, "delta", body.Delta, "balance", balance)
	writeJSON(w, http.StatusOK, creditsJSON{Owner: key, Delta: body.Delta, Before: balance - body.Delta, Balance: balance})
	return nil
}

// teamFor returns the team named in the request path, if it exists and p
// may touch it.
func (s *Server) teamFor(r *http.Request, p principal) (string, error) {
	name := r.PathValue("name")
	if !p.mayTouchTeam(name) {
		return "", errorf(http.StatusForbidden, "token %q is restricted to team %q", p.name, p.team)
	}
	if _, ok := s.eng.Rules().Teams[name]; !ok {
		return "", errorf(http.StatusNotFound, "unknown team %q", name)
	}
	return name, nil
}

// teamJSON is GET /v1/teams/{name}.
type teamJSON struct {
	Team    string            `json:"team"`
	Members []string          `json:"members"`
	Limits  []limitStatusJSON `json:"limits"`
	Balance balanceJSON       `json:"balance"`
}

func (s *Server) getTeam(w http.ResponseWriter, r *http.Request, p principal) error {
	name, err := s.teamFor(r, p)
	if err != nil {
		return err
	}
	st, err := s.eng.Status(r.Context(), teamPrefix+name)
	if err != nil {
		return engineError(err)
	}
	members := slices.Sorted(slices.Values(s.eng.Rules().Teams[name].Members))
	writeJSON(w, http.StatusOK, teamJSON{Team: name, Members: members, Limits: statusesToJSON(st.Limits), Balance: balanceToJSON(st)})
	return nil
}

// requireLedger refuses a change when there is no ledger to record it.
func (s *Server) requireLedger() error {
	if s.led == nil {
		return errorf(http.StatusServiceUnavailable, "no ledger is configured, and changes must be recorded: start quotagate with a ledger")
	}
	return nil
}

// record appends an admin record: p changed what of subject from before
// to after.
func (s *Server) record(ctx context.Context, p principal, subject, what, before, after string) error {
	rec, err := ledger.NewAdminChange(s.now(), p.name, subject, what, before, after)
	if err == nil {
		err = s.led.Append(context.WithoutCancel(ctx), []ledger.Record{rec})
	}
	if err != nil {
		return &httpError{Code: http.StatusServiceUnavailable, Msg: "the ledger could not record the change, so it was not made (nothing was changed); retry later", Err: err}
	}
	return nil
}

// recordUndone records that a change recorded a moment ago was not made
// after all (the engine refused it: a reload in between, say), as the
// reverse change from after back to before, so that the ledger's last
// word on subject is what holds.
func (s *Server) recordUndone(ctx context.Context, p principal, subject, what, after, before string, cause error) {
	s.log.Warn("admin: a recorded change was not made", "actor", p.name, "subject", subject, "what", what, "err", cause)
	if err := s.record(ctx, p, subject, what, after, before); err != nil {
		s.log.Error("admin: the ledger holds a change that was not made, and could not record its reversal", "subject", subject, "what", what, "err", err)
	}
}
