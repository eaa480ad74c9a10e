package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/quotagate/quotagate/engine"
)

// Validate checks f and returns nil or a *ValidationError listing every
// problem, each with its field path and offending value. It checks the file
// itself: its schema, the quota rules and the references between blocks;
// the components' own checks are LoadOptions.Check. Parse and Load call it;
// call it again only after changing a File by hand.
func (f *File) Validate() error {
	var p problems
	f.validate(&p)
	return p.err()
}

func (f *File) validate(p *problems) {
	if len(f.QuotaManager.Tiers) == 0 {
		p.addf("quota_manager.tiers", "missing; define at least one tier, e.g. freemium: {api_calls_per_hour: 10, priority: low}")
	}
	f.engineConfig(p)
	f.validateQuota(p)
	f.validateSubjects(p)
	f.validateLimitCounts(p)
	f.validateIdentity(p)
	f.validateRoutes(p)
	f.validateServer(p)
	f.validateLedger(p)
}

// validateQuota checks the quota_manager fields that engineConfig does not
// parse: names that must refer to something, and ranges.
func (f *File) validateQuota(p *problems) {
	qm := &f.QuotaManager
	const base = "quota_manager"
	tiers := sortedKeys(qm.Tiers)
	if qm.DefaultTier != "" && !has(qm.Tiers, qm.DefaultTier) {
		p.addf(base+".default_tier", "unknown tier %q%s", qm.DefaultTier, oneOf(qm.DefaultTier, tiers))
	}
	if qm.UnknownSubjects != "default" && qm.UnknownSubjects != "deny" {
		p.addf(base+".unknown_subjects", "must be default or deny, got %q", qm.UnknownSubjects)
	}
	features := f.featureNames()
	for _, name := range tiers {
		t, path := qm.Tiers[name], field(base+".tiers", name)
		checkNames(t.Features, path+".features", "action or workflow", features, p)
		if u, err := url.Parse(t.UpgradeURL); t.UpgradeURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			p.addf(path+".upgrade_url", "want an absolute http or https URL, got %q", t.UpgradeURL)
		}
	}
	for _, name := range sortedKeys(qm.Roles) {
		checkNames(qm.Roles[name].Features, field(field(base+".roles", name), "features"), "action or workflow", features, p)
	}
	for _, name := range sortedKeys(qm.Actions) {
		a, path := qm.Actions[name], field(base+".actions", name)
		if a.TokensPer1000Units < 0 {
			p.addf(path+".tokens_per_1000_units", "must be >= 0, got %d", a.TokensPer1000Units)
		}
		if a.TokensPerCall < 0 {
			p.addf(path+".tokens_per_call", "must be >= 0, got %d", a.TokensPerCall)
		}
		if a.TokensPer1000Units > engine.MaxQuantity {
			p.addf(path+".tokens_per_1000_units", tooLarge, engine.MaxQuantity, a.TokensPer1000Units)
		}
		if a.TokensPerCall > engine.MaxQuantity {
			p.addf(path+".tokens_per_call", tooLarge, engine.MaxQuantity, a.TokensPerCall)
		}
	}
	f.validateAlerts(p)
	f.validateMessages(p)
	if qm.Cache.Subjects < 0 {
		p.addf(base+".cache.subjects", "must be >= 0 (0 means 100000), got %d", qm.Cache.Subjects)
	}
	if qm.Cache.Shards < 0 || qm.Cache.Shards > 1<<16 {
		p.addf(base+".cache.shards", "must be from 0 (automatic) to 65536, got %d", qm.Cache.Shards)
	}
}

// featureNames is every action and workflow name the file mentions, which
// is what a features list may name.
func (f *File) featureNames() []string {
	qm := &f.QuotaManager
	names := append(sortedKeys(qm.Actions), sortedKeys(qm.Workflows)...)
	for _, r := range f.Routes.Rules {
		names = append(names, r.Action, r.Workflow)
	}
	addLimitActions := func(ls []Limit) {
		for _, l := range ls {
			names = append(names, l.Actions...)
		}
	}
	for _, t := range qm.Tiers {
		addLimitActions(t.Limits)
	}
	for _, u := range qm.Users {
		addLimitActions(u.Limits)
	}
	slices.Sort(names)
	return slices.Compact(slices.DeleteFunc(names, func(s string) bool { return s == "" }))
}

func (f *File) validateAlerts(p *problems) {
	a := &f.QuotaManager.Alerts
	const path = "quota_manager.alerts"
	if a.ThresholdPercentage < 1 || a.ThresholdPercentage > 100 {
		p.addf(path+".threshold_percentage", "must be from 1 to 100, got %d", a.ThresholdPercentage)
	}
	channels := []string{"dashboard", "email", "webhook"}
	checkNames(a.Channels, path+".channels", "channel", channels, p)
	checkDuplicates(a.Channels, path+".channels", p)
}

func (f *File) validateMessages(p *problems) {
	m := &f.QuotaManager.Messages
	const path = "quota_manager.messages"
	if n := countVerbs(m.Warning); m.Warning != "" && n != 1 {
		p.addf(path+".warning", "must hold exactly one %%s for the period (\"daily\"), got %q", m.Warning)
	}
	if n := countVerbs(m.FeatureNotInPlan); m.FeatureNotInPlan != "" && n != 2 {
		p.addf(path+".feature_not_in_plan", "must hold exactly two %%s, the feature then the tier, got %q", m.FeatureNotInPlan)
	}
}

// countVerbs counts the fmt verbs in s, not counting "%%"; -1 means a verb
// other than %s.
func countVerbs(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != 's' {
			return -1
		}
		n++
	}
	return n
}

// validateSubjects checks users, teams and roles refer to each other
// consistently.
func (f *File) validateSubjects(p *problems) {
	qm := &f.QuotaManager
	teamOf := make(map[string]string) // member -> team
	for _, team := range sortedKeys(qm.Teams) {
		path := field(field("quota_manager.teams", team), "members")
		for i, m := range qm.Teams[team].Members {
			switch prev, dup := teamOf[m]; {
			case m == "":
				p.addf(index(path, i), "empty member name; remove it")
			case dup && prev == team:
				p.addf(index(path, i), "%q is listed twice; remove one", m)
			case dup:
				p.addf(index(path, i), "%q is already a member of team %q; a subject belongs to one team", m, prev)
			default:
				teamOf[m] = team
			}
		}
		if qm.Teams[team].Credits < 0 {
			p.addf(field(field("quota_manager.teams", team), "credits"), "must be >= 0, got %d", qm.Teams[team].Credits)
		}
		if c := qm.Teams[team].Credits; c > engine.MaxQuantity {
			p.addf(field(field("quota_manager.teams", team), "credits"), tooLarge, engine.MaxQuantity, c)
		}
	}
	keys := make(map[string]string) // api key hash -> user
	for _, name := range sortedKeys(qm.Users) {
		f.validateUser(name, teamOf, keys, p)
	}
}

func (f *File) validateUser(name string, teamOf, keys map[string]string, p *problems) {
	qm := &f.QuotaManager
	u, path := qm.Users[name], field("quota_manager.users", name)
	if u.Tier != "" && !has(qm.Tiers, u.Tier) {
		p.addf(path+".tier", "unknown tier %q%s", u.Tier, oneOf(u.Tier, sortedKeys(qm.Tiers)))
	}
	if u.Team != "" {
		switch member, ok := teamOf[name]; {
		case !has(qm.Teams, u.Team):
			p.addf(path+".team", "unknown team %q; define it under quota_manager.teams%s", u.Team, didYouMean(u.Team, sortedKeys(qm.Teams)))
		case ok && member != u.Team:
			p.addf(path+".team", "is %q, but the user is a member of team %q; make them agree", u.Team, member)
		}
	}
	checkNames(u.Roles, path+".roles", "role", sortedKeys(qm.Roles), p)
	if u.Credits < 0 {
		p.addf(path+".credits", "must be >= 0, got %d", u.Credits)
	}
	if u.Credits > engine.MaxQuantity {
		p.addf(path+".credits", tooLarge, engine.MaxQuantity, u.Credits)
	}
	if u.APIKeySHA256 == "" {
		return
	}
	h := strings.ToLower(u.APIKeySHA256)
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		p.addf(path+".api_key_sha256", "want 64 hex digits (the SHA-256 of the key, e.g. from `printf %%s KEY | sha256sum`), got %q", u.APIKeySHA256)
		return
	}
	if other, dup := keys[h]; dup {
		p.addf(path+".api_key_sha256", "same key hash as user %q; give each user its own key", other)
		return
	}
	keys[h] = name
}

// validateLimitCounts checks that no request can meet more limits than the
// engine checks at once, and that limit names are unique per owner.
func (f *File) validateLimitCounts(p *problems) {
	qm := &f.QuotaManager
	maxWorkflow := 0
	for _, name := range sortedKeys(qm.Workflows) {
		ls := qm.Workflows[name].Limits
		checkLimitNames(ls, nil, field(field("quota_manager.workflows", name), "limits"), p)
		maxWorkflow = max(maxWorkflow, len(ls))
	}
	for _, name := range sortedKeys(qm.Tiers) {
		t, path := qm.Tiers[name], field("quota_manager.tiers", name)
		checkLimitNames(t.Limits, shorthandNames(&t), path+".limits", p)
		if n := tierLimitCount(&t) + maxWorkflow; n > engine.MaxLimitsPerRequest {
			p.addf(path, "up to %d limits (tier and workflow) would apply to one request; at most %d may: remove some", n, engine.MaxLimitsPerRequest)
		}
	}
	for _, name := range sortedKeys(qm.Roles) {
		checkLimitNames(qm.Roles[name].Limits, nil, field(field("quota_manager.roles", name), "limits"), p)
	}
	for _, name := range sortedKeys(qm.Teams) {
		checkLimitNames(qm.Teams[name].Limits, nil, field(field("quota_manager.teams", name), "limits"), p)
	}
	for _, name := range sortedKeys(qm.Users) {
		u, path := qm.Users[name], field("quota_manager.users", name)
		checkLimitNames(u.Limits, nil, path+".limits", p)
		n := len(u.Limits) + maxWorkflow + len(qm.Teams[u.Team].Limits)
		if t, ok := qm.Tiers[u.Tier]; ok {
			n += tierLimitCount(&t)
		}
		for _, r := range u.Roles {
			n += len(qm.Roles[r].Limits)
		}
		if n > engine.MaxLimitsPerRequest {
			p.addf(path, "up to %d limits (tier, roles, team, workflow and user) would apply to one request; at most %d may: remove some", n, engine.MaxLimitsPerRequest)
		}
	}
}

func shorthandNames(t *Tier) []string {
	var names []string
	for _, s := range shorthands {
		if s.get(t) > 0 {
			names = append(names, s.name)
		}
	}
	return names
}

func tierLimitCount(t *Tier) int { return len(shorthandNames(t)) + len(t.Limits) }

// checkLimitNames reports a limit whose explicit name repeats another
// limit's of the same owner (taken, such as the shorthand names, included).
func checkLimitNames(ls []Limit, taken []string, path string, p *problems) {
	seen := slices.Clone(taken)
	for i, l := range ls {
		if l.Name == "" {
			continue
		}
		if slices.Contains(seen, l.Name) {
			p.addf(index(path, i)+".name", "%q is already used by another limit here; limits with one name would share a counter, so rename one", l.Name)
			continue
		}
		seen = append(seen, l.Name)
	}
}

// checkNames reports every entry of list that is not in known (sorted).
func checkNames(list []string, path, what string, known []string, p *problems) {
	for i, s := range list {
		if !slices.Contains(known, s) {
			p.addf(index(path, i), "unknown %s %q%s", what, s, oneOf(s, known))
		}
	}
}

func checkDuplicates(list []string, path string, p *problems) {
	for i, s := range list {
		if slices.Index(list, s) < i {
			p.addf(index(path, i), "%q is listed twice; remove one", s)
		}
	}
}

// oneOf is a hint for an unknown name: a suggestion, or the known names.
func oneOf(s string, known []string) string {
	if d := didYouMean(s, known); d != "" {
		return d
	}
	if len(known) == 0 {
		return ""
	}
	return fmt.Sprintf("; want one of %s", strings.Join(known, ", "))
}

func didYouMean(s string, known []string) string {
	if best := suggest(s, known); best != "" {
		return fmt.Sprintf("; did you mean %s?", best)
	}
	return ""
}

func has[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
