package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// teamKeyPrefix starts the state key of a team: "team:<name>". Subject ids
// with this prefix are reserved.
const teamKeyPrefix = "team:"

// ruleset is compiled, immutable Rules. Engine holds the current one in
// an atomic.Pointer and Reload swaps in a new one whole, so a request sees
// one consistent ruleset from start to end.
type ruleset struct {
	rules        Rules
	loc          *time.Location
	utc          bool
	tiers        map[Tier]*tierRules
	defaultTier  *tierRules
	actions      map[string]ActionConfig
	users        map[string]*userRules
	roles        map[string]*roleRules
	workflows    map[string]*workflowRules
	teams        map[string]*teamRules
	teamOf       map[string]string // member -> team
	requiredTier map[string]Tier   // feature -> cheapest tier that includes it
	declared     map[string]string // actions priced or named in a features list, to their names
	threshold    int64             // percent
	msgs         Messages
	shedAt       [PriorityCritical + 1]float64
	periods      map[string][]Period // window name -> periods of its limits
	grantPeriods []Period            // distinct grant periods of tiers and teams
	// everyTierGrants is set when every tier has an active token grant.
	everyTierGrants bool
}

// limitRule is one compiled limit. key names its window counter in the
// owner's state and is the LimitStatus.Name.
type limitRule struct {
	key     string
	period  Period
	max     int64
	unit    Unit
	mode    WindowMode
	actions []string // nil means every action
	warning string   // e.g. "Approaching daily limit."
}

// appliesTo reports whether the rule counts requests for action.
func (r *limitRule) appliesTo(action string) bool {
	return r.actions == nil || slices.Contains(r.actions, action)
}

type tierRules struct {
	name     Tier
	priority Priority
	limits   []limitRule
	grant    TokenGrant
	features map[string]bool // nil means every feature
	maxDelay time.Duration
	failure  FailureMode
}

type userRules struct {
	tier    Tier
	team    string
	roles   []string
	limits  []limitRule
	credits int64
}

type roleRules struct {
	limits   []limitRule
	features map[string]bool
}

type workflowRules struct {
	name     string // the copy of its name that requests use (prepare)
	limits   []limitRule
	priority *Priority
}

type teamRules struct {
	name    string
	key     string // "team:<name>"
	grant   TokenGrant
	credits int64
	limits  []limitRule
	// paysCosts is true when members' costs come from the team's balance:
	// the team has a token grant or starting credits.
	paysCosts bool
}

// pays reports whether t is a configured team that pays its members' costs.
func (t *teamRules) pays() bool { return t != nil && t.paysCosts }

// needsState reports whether a member's request touches the team's state.
func (t *teamRules) needsState() bool { return t.pays() || (t != nil && len(t.limits) > 0) }

func grantActive(g TokenGrant) bool { return g.Amount > 0 || g.Unlimited }

// compile builds the ruleset of r, which must be valid (Rules.Validate)
// and carry its defaults.
func compile(r Rules) *ruleset {
	rs := &ruleset{
		rules:        r,
		loc:          r.Location,
		utc:          r.Location == time.UTC,
		tiers:        make(map[Tier]*tierRules, len(r.Tiers)),
		actions:      r.Actions,
		users:        make(map[string]*userRules, len(r.Users)),
		roles:        make(map[string]*roleRules, len(r.Roles)),
		workflows:    make(map[string]*workflowRules, len(r.Workflows)),
		teams:        make(map[string]*teamRules, len(r.Teams)),
		teamOf:       make(map[string]string),
		requiredTier: make(map[string]Tier),
		threshold:    int64(r.Alerts.ThresholdPercent),
		msgs:         r.Messages,
	}
	rs.shedAt = [...]float64{PriorityLow: 0.8, PriorityMedium: 0.9, PriorityHigh: 1.0, PriorityCritical: 0}
	for p, at := range r.Capacity.ShedAt {
		if p >= PriorityLow && p < PriorityCritical {
			rs.shedAt[p] = at
		}
	}
	for name, tc := range r.Tiers {
		rs.tiers[name] = &tierRules{
			name: name, priority: tc.Priority, grant: tc.Tokens, features: featureSet(tc.Features),
			limits: rs.compileLimits("", tc.Limits), maxDelay: tc.MaxDelay, failure: tc.FailureMode,
		}
	}
	rs.defaultTier = rs.tiers[r.DefaultTier]
	for name, uc := range r.Users {
		rs.users[name] = &userRules{tier: uc.Tier, team: uc.Team, roles: uc.Roles,
			limits: rs.compileLimits("", uc.Limits), credits: uc.Credits}
	}
	for name, rc := range r.Roles {
		rs.roles[name] = &roleRules{limits: rs.compileLimits("role:"+name+":", rc.Limits),
			features: featureSet(rc.Features)}
		if rs.roles[name].features == nil {
			rs.roles[name].features = map[string]bool{}
		}
	}
	for name, wc := range r.Workflows {
		rs.workflows[name] = &workflowRules{name: name, limits: rs.compileLimits("workflow:"+name+":", wc.Limits),
			priority: wc.Priority}
	}
	for name, tc := range r.Teams {
		rs.teams[name] = &teamRules{name: name, key: teamKeyPrefix + name, grant: tc.Tokens,
			credits: tc.Credits, limits: rs.compileLimits(teamKeyPrefix, tc.Limits),
			paysCosts: grantActive(tc.Tokens) || tc.Credits > 0}
		for _, m := range tc.Members {
			rs.teamOf[m] = name
		}
	}
	rs.computeRequiredTiers()
	rs.indexPeriods()
	rs.declared = declaredActions(&r)
	return rs
}

func featureSet(features []string) map[string]bool {
	if features == nil {
		return nil
	}
	set := make(map[string]bool, len(features))
	for _, f := range features {
		set[f] = true
	}
	return set
}

// computeRequiredTiers finds, for every feature named anywhere in the
// config, the lowest-priority tier that includes it.
func (rs *ruleset) computeRequiredTiers() {
	var features []string
	for _, tc := range rs.rules.Tiers {
		features = append(features, tc.Features...)
	}
	for _, rc := range rs.rules.Roles {
		features = append(features, rc.Features...)
	}
	for a := range rs.rules.Actions {
		features = append(features, a)
	}
	for w := range rs.rules.Workflows {
		features = append(features, w)
	}
	for _, f := range features {
		if _, done := rs.requiredTier[f]; done {
			continue
		}
		var best *tierRules
		for _, t := range rs.tiers {
			if t.features != nil && !t.features[f] {
				continue
			}
			if best == nil || t.priority < best.priority || (t.priority == best.priority && t.name < best.name) {
				best = t
			}
		}
		if best != nil {
			rs.requiredTier[f] = best.name
		}
	}
}

// compileLimits compiles limits, prefixing each key.
func (rs *ruleset) compileLimits(prefix string, limits []LimitConfig) []limitRule {
	if len(limits) == 0 {
		return nil
	}
	out := make([]limitRule, len(limits))
	for i, l := range limits {
		mode := rs.rules.Window
		if l.Mode != nil {
			mode = *l.Mode
		}
		out[i] = limitRule{
			key: prefix + limitName(l), period: l.Period, max: l.Max, unit: l.Unit, mode: mode,
			actions: l.Actions, warning: fmt.Sprintf(rs.msgs.Warning, l.Period.Adjective()),
		}
	}
	return out
}

// limitName returns l.Name, or the name derived from its actions, unit and
// period: "hour", "translate:day", "tokens:month".
func limitName(l LimitConfig) string {
	if l.Name != "" {
		return l.Name
	}
	var parts []string
	if len(l.Actions) > 0 {
		parts = append(parts, strings.Join(l.Actions, "+"))
	}
	if l.Unit != UnitCalls {
		parts = append(parts, l.Unit.String())
	}
	return strings.Join(append(parts, l.Period.String()), ":")
}

// tierOf returns the tier named t, or the default tier when t is empty or
// no longer defined (a reload removed it).
func (rs *ruleset) tierOf(t Tier) *tierRules {
	if tr, ok := rs.tiers[t]; ok {
		return tr
	}
	return rs.defaultTier
}

// staticTier is the tier of req before its runtime profile is known: the
// configured user's tier, else the asserted one, else the default.
func (rs *ruleset) staticTier(req *Request, u *userRules) *tierRules {
	if u != nil && u.tier != "" {
		return rs.tierOf(u.tier)
	}
	return rs.tierOf(req.Tier)
}

// resolveTier applies the precedence runtime profile > configured user >
// asserted claim > default; static is the tier without the profile.
func (rs *ruleset) resolveTier(static *tierRules, prof *profileState) *tierRules {
	if prof != nil && prof.p.Tier != "" {
		if tr, ok := rs.tiers[prof.p.Tier]; ok {
			return tr
		}
	}
	return static
}

// teamFor returns the team of req: the runtime profile's, the asserted one,
// the configured user's, or the team that lists the subject as a member.
// prof must be usable under rs (usableOrNilLocked), or nil.
func (rs *ruleset) teamFor(req *Request, u *userRules, prof *profileState) string {
	if prof != nil && prof.p.Team != "" {
		return prof.p.Team
	}
	if req.Team != "" {
		return req.Team
	}
	if u != nil && u.team != "" {
		return u.team
	}
	return rs.teamOf[req.Subject]
}

// known reports whether the config knows req's subject without looking at
// runtime state: a configured user or team member, or an asserted tier.
func (rs *ruleset) known(req *Request) bool {
	if req.Tier != "" {
		return true
	}
	if _, ok := rs.users[req.Subject]; ok {
		return true
	}
	_, ok := rs.teamOf[req.Subject]
	return ok
}

// startingCredits is the credit balance of a key seen for the first time.
func (rs *ruleset) startingCredits(key string) int64 {
	if name, ok := strings.CutPrefix(key, teamKeyPrefix); ok {
		if t := rs.teams[name]; t != nil {
			return t.credits
		}
		return 0
	}
	if u := rs.users[key]; u != nil {
		return u.credits
	}
	return 0
}

// cost prices req: PerCall + ceil(Units × PerThousand / 1000).
// ok is false when the cost, or the units it is priced from, exceed
// MaxQuantity: such a request can never be counted and is refused.
func (rs *ruleset) cost(req *Request) (cost int64, ok bool) {
	if req.Units > MaxQuantity {
		return 0, false
	}
	a, found := rs.actions[req.Action]
	if !found {
		return 0, true
	}
	return priceOf(a.PerCall, a.PerThousand, req.Units)
}
