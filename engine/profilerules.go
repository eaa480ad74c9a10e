package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a subject id, a limit and a run-time profile may hold.
// The admin API, SetProfile and configuration files are checked against
// the same bounds, so that nothing one of them accepts is refused later by
// another.
const (
	// MaxSubjectIDBytes bounds the length of a subject id, in bytes.
	MaxSubjectIDBytes = 256
	// MaxLimitNameBytes bounds the length of a limit's name, in bytes.
	MaxLimitNameBytes = 128
	// MaxLimitActions bounds how many actions one limit may list.
	MaxLimitActions = 64
	// MinPeriod is the shortest window or grant period: counters are kept
	// and shared (store/redis) in whole milliseconds, and a window shorter
	// than a second counts nothing useful.
	MinPeriod = time.Second
	// MaxCredits bounds a credit balance and one credit change: it is
	// MaxQuantity, so that a balance never wraps and a Lua script in Redis
	// adds credits exactly.
	MaxCredits int64 = MaxQuantity
)

// Sentinel errors of profile and credit changes.
var (
	// ErrInvalidProfile is wrapped by every problem ValidateProfile reports.
	ErrInvalidProfile = errors.New("engine: invalid profile")
	// ErrInvalidSubject is returned for a subject id that breaks the
	// bounds of ValidateSubjectID.
	ErrInvalidSubject = errors.New("engine: invalid subject id")
	// ErrNoBalance is returned by AddCredits for a team that has no
	// shared balance to add them to.
	ErrNoBalance = errors.New("engine: no shared balance")
)

// ValidateSubjectID reports whether id may name a subject: non-empty, at
// most MaxSubjectIDBytes bytes of valid UTF-8 with no control character,
// no whitespace other than a plain space inside it, and not starting with
// "team:" (reserved for teams). The error wraps ErrInvalidSubject.
func ValidateSubjectID(id string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidSubject, truncateForMessage(id), why)
	}
	switch {
	case id == "":
		return fmt.Errorf("%w: it is empty", ErrInvalidSubject)
	case len(id) > MaxSubjectIDBytes:
		return bad(fmt.Sprintf("it is %d bytes long; at most %d are allowed", len(id), MaxSubjectIDBytes))
	case !utf8.ValidString(id):
		return bad("it is not valid UTF-8")
	case strings.HasPrefix(id, teamKeyPrefix):
		return bad(fmt.Sprintf("ids starting with %q name teams", teamKeyPrefix))
	case strings.TrimSpace(id) != id:
		return bad("it starts or ends with whitespace")
	}
	for _, r := range id {
		if unicode.IsControl(r) || (unicode.IsSpace(r) && r != ' ') || !unicode.IsPrint(r) && r != ' ' {
			return bad(fmt.Sprintf("it holds the unprintable character %U; use printable characters only", r))
		}
	}
	return nil
}

// truncateForMessage shortens s for an error message.
func truncateForMessage(s string) string {
	const keep = 64
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "…"
}

// ValidateProfile reports every problem that keeps p from being the
// run-time profile of subject under the engine's current configuration:
// an invalid subject id, an unknown tier, team or role, a role listed
// twice, a limit that breaks the rules of configured limits (period at
// least MinPeriod, at most MaxPeriod for a plain duration, whole seconds;
// max >= 0; unique names of at most MaxLimitNameBytes; at most
// MaxLimitActions actions), or more limits applying to one request than
// MaxLimitsPerRequest. Each problem names its field path ("profile.roles[2]")
// and wraps ErrInvalidProfile. SetProfile checks the same rules, and a
// Check ignores a stored profile that breaks them (after a reload, say).
// It is safe for concurrent use.
func (e *Engine) ValidateProfile(subject string, p Profile) error {
	return e.rules.Load().validateProfile(subject, p)
}

// validateProfile is ValidateProfile under rs.
func (rs *ruleset) validateProfile(subject string, p Profile) error {
	v := &validator{kind: ErrInvalidProfile}
	if err := ValidateSubjectID(subject); err != nil {
		v.errs = append(v.errs, err)
	}
	if p.Tier != "" {
		if _, ok := rs.tiers[p.Tier]; !ok {
			v.errs = append(v.errs, fmt.Errorf("%w: profile.tier: %w %q: use one of %s",
				ErrInvalidProfile, ErrUnknownTier, truncateForMessage(string(p.Tier)), strings.Join(quotedKeys(rs.tiers), ", ")))
		}
	}
	if p.Team != "" && rs.teams[p.Team] == nil {
		v.add("profile.team", "unknown team %q: use a team defined under teams%s", p.Team, knownList(quotedKeys(rs.teams)))
	}
	for i, r := range p.Roles {
		path := fmt.Sprintf("profile.roles[%d]", i)
		switch {
		case rs.roles[r] == nil:
			v.add(path, "unknown role %q: use a role defined under roles%s", truncateForMessage(r), knownList(quotedKeys(rs.roles)))
		case indexOf(p.Roles, r) < i:
			v.add(path, "role %q is listed twice: remove one", r)
		}
		if len(v.errs) > MaxLimitsPerRequest {
			break // a huge list gets a bounded answer
		}
	}
	if len(p.Limits) > MaxLimitsPerRequest {
		v.add("profile.limits", "%d limits given; at most %d (engine.MaxLimitsPerRequest) apply to one request", len(p.Limits), MaxLimitsPerRequest)
		return v.err()
	}
	validateLimits(v, "profile.limits", p.Limits)
	if len(v.errs) == 0 {
		if n := rs.profileLimitCount(subject, &p); n > MaxLimitsPerRequest {
			v.add("profile", "up to %d limits (tier, user, profile, roles, team and workflow) would apply to one request; at most %d (engine.MaxLimitsPerRequest) may: remove limits or roles",
				n, MaxLimitsPerRequest)
		}
	}
	return v.err()
}

// profileLimitCount is the most limits one request of subject could be
// checked against with profile p: the tier's (the profile's, the
// configured user's, or the largest of all when a claim may assert any),
// the user's and the profile's own (one counter per name), its roles',
// its team's and the largest workflow's.
func (rs *ruleset) profileLimitCount(subject string, p *Profile) int {
	u := rs.users[subject]
	var userRules []limitRule
	if u != nil {
		userRules = u.limits
	}
	own := map[string]bool{}
	for _, l := range p.Limits {
		own[limitName(l)] = true
	}
	for i := range userRules {
		own[userRules[i].key] = true
	}
	var candidates []*tierRules
	switch {
	case p.Tier != "" && rs.tiers[p.Tier] != nil:
		candidates = append(candidates, rs.tiers[p.Tier])
	case u != nil && u.tier != "":
		candidates = append(candidates, rs.tierOf(u.tier))
	default:
		for _, t := range rs.tiers {
			candidates = append(candidates, t)
		}
	}
	most := 0
	for _, t := range candidates {
		n := len(own)
		for i := range t.limits {
			if !own[t.limits[i].key] {
				n++
			}
		}
		most = max(most, n)
	}
	roles := map[string]bool{}
	if u != nil {
		for _, r := range u.roles {
			roles[r] = true
		}
	}
	for _, r := range p.Roles {
		roles[r] = true
	}
	for r := range roles {
		if rr := rs.roles[r]; rr != nil {
			most += len(rr.limits)
		}
	}
	team := p.Team
	if team == "" && u != nil {
		team = u.team
	}
	if team == "" {
		team = rs.teamOf[subject]
	}
	if t := rs.teams[team]; t != nil {
		most += len(t.limits)
	}
	wf := 0
	for _, w := range rs.workflows {
		wf = max(wf, len(w.limits))
	}
	return most + wf
}

// usableLocked reports whether ps may be applied to subject under rs. It
// validates ps once per ruleset (a reload may make a stored profile
// invalid, or valid again) and compiles its limits when it is usable. A
// profile that is not usable is ignored by Checks except for its tier, if
// that is still defined: they fall back to the configured rules and are
// metered as usual. The caller holds the lock of the state that owns ps.
func (ps *profileState) usableLocked(rs *ruleset, subject string) bool {
	if ps == nil {
		return false
	}
	if ps.rs != rs {
		ps.rs, ps.rules, ps.logged = rs, nil, false
		ps.problem = rs.validateProfile(subject, ps.p)
		if ps.problem == nil {
			ps.rules = rs.compileLimits("", ps.p.Limits)
		}
	}
	return ps.problem == nil
}

// unloggedProblemLocked returns the problem of ps under its ruleset if it
// has not been logged yet, and marks it logged: a bad profile is logged
// once per subject and ruleset, not at every Check. The caller holds the
// lock of the state that owns ps.
func (ps *profileState) unloggedProblemLocked() error {
	if ps == nil || ps.problem == nil || ps.logged {
		return nil
	}
	ps.logged = true
	return ps.problem
}

// logBadProfile logs that subject's stored profile is ignored. No lock is
// held.
func (e *Engine) logBadProfile(subject string, problem error) {
	e.log.Warn("engine: the stored profile no longer validates; its Checks use the configured rules until it is repaired (PUT or PATCH its profile)",
		"subject", subject, "problem", strings.ReplaceAll(problem.Error(), "\n", "; "))
}

// discardLogger is the Logger of an engine configured without one.
var discardLogger = slog.New(slog.DiscardHandler)

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func quotedKeys[K ~string, V any](m map[K]V) []string {
	keys := sortedKeys(m)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%q", string(k))
	}
	return out
}

func knownList(names []string) string {
	if len(names) == 0 {
		return " (none is defined)"
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// usableOrNilLocked returns ps if it is usable under rs, else nil. The
// caller holds the lock of the state that owns ps.
func (ps *profileState) usableOrNilLocked(rs *ruleset, subject string) *profileState {
	if ps.usableLocked(rs, subject) {
		return ps
	}
	return nil
}
