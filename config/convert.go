package config

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones on hosts without zoneinfo

	"github.com/quotagate/quotagate/engine"
)

// Engine converts the quota_manager block to engine.Rules. The engine's
// Options (the cache block among them) are the caller's to build. It
// returns a *ValidationError if a value cannot be converted, which cannot
// happen for a File from Parse or Load.
func (f *File) Engine() (engine.Rules, error) {
	var p problems
	cfg := f.engineConfig(&p)
	if err := p.err(); err != nil {
		return engine.Rules{}, err
	}
	return cfg, nil
}

// engineConfig converts, recording a problem for every value that does not
// parse. Validate shares it, so the two can never disagree.
func (f *File) engineConfig(p *problems) engine.Rules {
	qm := &f.QuotaManager
	const base = "quota_manager"
	m := qm.Messages
	cfg := engine.Rules{
		Tiers:       make(map[engine.Tier]engine.TierConfig, len(qm.Tiers)),
		DefaultTier: engine.Tier(qm.DefaultTier),
		DenyUnknown: qm.UnknownSubjects == "deny",
		Actions:     make(map[string]engine.ActionConfig, len(qm.Actions)),
		Users:       make(map[string]engine.UserConfig, len(qm.Users)),
		Roles:       make(map[string]engine.RoleConfig, len(qm.Roles)),
		Workflows:   make(map[string]engine.WorkflowConfig, len(qm.Workflows)),
		Teams:       make(map[string]engine.TeamConfig, len(qm.Teams)),
		Alerts:      engine.AlertConfig{ThresholdPercent: qm.Alerts.ThresholdPercentage},
		Messages: engine.Messages{
			Exceeded: m.Exceeded, Warning: m.Warning, InsufficientBalance: m.InsufficientBalance,
			FeatureNotInPlan: m.FeatureNotInPlan, Shed: m.Shed, NoIdentity: m.NoIdentity,
			UnknownSubject: m.UnknownSubject, UnknownAction: m.UnknownAction,
		},
		Capacity: convertCapacity(qm.Capacity, base+".capacity", p),
		Location: parseLocation(qm.Timezone, base+".timezone", p),
	}
	if mode, err := engine.ParseWindowMode(qm.Window); err != nil {
		p.addf(base+".window", "%v", err)
	} else {
		cfg.Window = mode
	}
	for _, name := range sortedKeys(qm.Tiers) {
		cfg.Tiers[engine.Tier(name)] = convertTier(qm.Tiers[name], field(base+".tiers", name), p)
	}
	for _, name := range sortedKeys(qm.Actions) {
		a := qm.Actions[name]
		cfg.Actions[name] = engine.ActionConfig{PerCall: a.TokensPerCall, PerThousand: a.TokensPer1000Units, Unit: a.Unit,
			Settle: convertSettle(a.Settle, a, field(base+".actions", name)+".settle", p)}
	}
	cfg.UnknownActions = convertUnknownActions(qm, p)
	convertEntities(qm, &cfg, p)
	return cfg
}

// convertEntities converts the users, roles, workflows and teams.
func convertEntities(qm *QuotaManager, cfg *engine.Rules, p *problems) {
	const base = "quota_manager"
	for _, name := range sortedKeys(qm.Users) {
		u := qm.Users[name]
		cfg.Users[name] = engine.UserConfig{
			Tier: engine.Tier(u.Tier), Team: u.Team, Roles: slices.Clone(u.Roles), Credits: u.Credits,
			Limits: convertLimits(u.Limits, field(field(base+".users", name), "limits"), p),
		}
	}
	for _, name := range sortedKeys(qm.Roles) {
		r := qm.Roles[name]
		cfg.Roles[name] = engine.RoleConfig{
			Limits:   convertLimits(r.Limits, field(field(base+".roles", name), "limits"), p),
			Features: slices.Clone(r.Features),
		}
	}
	for _, name := range sortedKeys(qm.Workflows) {
		cfg.Workflows[name] = convertWorkflow(qm.Workflows[name], field(base+".workflows", name), p)
	}
	for _, name := range sortedKeys(qm.Teams) {
		t, path := qm.Teams[name], field(base+".teams", name)
		cfg.Teams[name] = engine.TeamConfig{
			Members: slices.Clone(t.Members), Credits: t.Credits,
			Tokens: convertTokens(t.Tokens, path+".tokens", p),
			Limits: convertLimits(t.Limits, path+".limits", p),
		}
	}
}

// shorthands are the example configuration's api_calls_per_X keys, in the order their
// limits are listed, with the limit name each becomes.
var shorthands = []struct {
	key, name string
	get       func(*Tier) int64
}{
	{"api_calls_per_minute", "minute", func(t *Tier) int64 { return t.APICallsPerMinute }},
	{"api_calls_per_hour", "hour", func(t *Tier) int64 { return t.APICallsPerHour }},
	{"api_calls_per_day", "day", func(t *Tier) int64 { return t.APICallsPerDay }},
	{"api_calls_per_month", "month", func(t *Tier) int64 { return t.APICallsPerMonth }},
}

func convertTier(t Tier, path string, p *problems) engine.TierConfig {
	tc := engine.TierConfig{
		Tokens:     convertTokens(t.Tokens, path+".tokens", p),
		Features:   slices.Clone(t.Features),
		MaxDelay:   t.MaxDelay.D(),
		UpgradeURL: t.UpgradeURL,
	}
	if t.Priority != "" {
		tc.Priority = parsePriority(t.Priority, path+".priority", p)
	}
	if t.FailureMode != "" {
		mode, err := engine.ParseFailureMode(t.FailureMode)
		if err != nil {
			p.addf(path+".failure_mode", "%v", err)
		}
		tc.FailureMode = mode
	}
	if t.MaxDelay < 0 {
		p.addf(path+".max_delay", "must be >= 0, got %s", t.MaxDelay)
	}
	for _, s := range shorthands {
		switch n := s.get(&t); {
		case n < 0:
			p.addf(path+"."+s.key, "must be > 0, got %d", n)
		case n > engine.MaxQuantity:
			p.addf(path+"."+s.key, tooLarge, engine.MaxQuantity, n)
		case n > 0:
			period, _ := engine.ParsePeriod(s.name)
			tc.Limits = append(tc.Limits, engine.LimitConfig{Name: s.name, Period: period, Max: n})
		}
	}
	tc.Limits = append(tc.Limits, convertLimits(t.Limits, path+".limits", p)...)
	return tc
}

func convertLimits(ls []Limit, path string, p *problems) []engine.LimitConfig {
	var out []engine.LimitConfig
	for i, l := range ls {
		lp := index(path, i)
		lc := engine.LimitConfig{Name: l.Name, Max: l.Max, Actions: slices.Clone(l.Actions)}
		if l.Max <= 0 {
			p.addf(lp+".max", "must be > 0, got %d", l.Max)
		}
		if l.Max > engine.MaxQuantity {
			p.addf(lp+".max", tooLarge, engine.MaxQuantity, l.Max)
		}
		if l.Per == "" {
			p.addf(lp+".per", "missing; want minute, hour, day, week, month or a duration such as 15m")
		} else if period, err := engine.ParsePeriod(l.Per); err != nil {
			p.addf(lp+".per", "%v", err)
		} else if err := engine.CheckPeriod(period); err != nil {
			p.addf(lp+".per", "%v", err)
		} else {
			lc.Period = period
		}
		unit, err := engine.ParseUnit(l.Unit)
		if err != nil {
			p.addf(lp+".unit", "%v", err)
		}
		lc.Unit = unit
		if l.Window != "" {
			mode, err := engine.ParseWindowMode(l.Window)
			if err != nil {
				p.addf(lp+".window", "%v", err)
			}
			lc.Mode = &mode
		}
		for j, a := range l.Actions {
			if a == "" {
				p.addf(index(lp+".actions", j), "empty action name; remove it")
			}
		}
		if len(l.Name) > engine.MaxLimitNameBytes {
			p.addf(lp+".name", "is %d bytes long; at most %d are allowed", len(l.Name), engine.MaxLimitNameBytes)
		}
		if len(l.Actions) > engine.MaxLimitActions {
			p.addf(lp+".actions", "lists %d actions; at most %d are allowed: split the limit", len(l.Actions), engine.MaxLimitActions)
		}
		out = append(out, lc)
	}
	return out
}

// tooLarge is the problem of a quantity above engine.MaxQuantity; its
// arguments are the bound and the value.
const tooLarge = "must be at most %d (2^53-1, the largest quantity quotagate counts exactly), got %d"

func convertTokens(t Tokens, path string, p *problems) engine.TokenGrant {
	g := engine.TokenGrant{Amount: t.Grant, Unlimited: t.Unlimited}
	switch {
	case t.Grant < 0:
		p.addf(path+".grant", "must be >= 0, got %d", t.Grant)
	case t.Grant > engine.MaxQuantity:
		p.addf(path+".grant", tooLarge, engine.MaxQuantity, t.Grant)
	case t.Unlimited && (t.Grant > 0 || t.Every != ""):
		p.addf(path+".unlimited", "cannot be combined with grant or every; remove one or the other")
	case t.Grant > 0 && t.Every == "":
		p.addf(path+".every", "missing; say how often the grant of %d refills: day, week, month or a duration such as 24h", t.Grant)
	case t.Grant == 0 && t.Every != "":
		p.addf(path+".grant", "must be > 0 when every is set, got 0")
	}
	if t.Every != "" {
		period, err := engine.ParsePeriod(t.Every)
		if err == nil {
			err = engine.CheckPeriod(period)
		}
		if err != nil {
			p.addf(path+".every", "%v", err)
		}
		g.Period = period
	}
	return g
}

func convertWorkflow(w Workflow, path string, p *problems) engine.WorkflowConfig {
	wc := engine.WorkflowConfig{Limits: convertLimits(w.Limits, path+".limits", p)}
	if w.Priority != "" {
		prio := parsePriority(w.Priority, path+".priority", p)
		wc.Priority = &prio
	}
	return wc
}

func convertCapacity(c Capacity, path string, p *problems) engine.CapacityConfig {
	cc := engine.CapacityConfig{RequestsPerSecond: c.RequestsPerSecond, Factor: c.Factor}
	if c.RequestsPerSecond < 0 {
		p.addf(path+".requests_per_second", "must be >= 0 (0 disables shedding), got %g", c.RequestsPerSecond)
	}
	if c.Factor < 0 || math.IsNaN(c.Factor) || math.IsInf(c.Factor, 0) {
		p.addf(path+".factor", "must be a finite number >= 0 (0 means 1), got %g", c.Factor)
	}
	if len(c.ShedAt) > 0 {
		cc.ShedAt = make(map[engine.Priority]float64, len(c.ShedAt))
	}
	for _, name := range sortedKeys(c.ShedAt) {
		v, fp := c.ShedAt[name], field(path+".shed_at", name)
		prio := parsePriority(name, fp, p)
		switch {
		case prio == engine.PriorityCritical:
			p.addf(fp, "critical requests are never shed; remove this key")
		case v <= 0:
			p.addf(fp, "must be > 0 (a fraction of capacity such as 0.8), got %g", v)
		}
		cc.ShedAt[prio] = v
	}
	return cc
}

func parsePriority(s, path string, p *problems) engine.Priority {
	prio, err := engine.ParsePriority(s)
	if err != nil {
		p.addf(path, "%v", err)
	}
	return prio
}

func parseLocation(name, path string, p *problems) *time.Location {
	if name == "" || name == "UTC" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		p.addf(path, "unknown time zone %q: want an IANA name such as UTC or Europe/Paris", name)
		return time.UTC
	}
	return loc
}

// sortedKeys returns m's keys in order, so problems are reported in a
// stable order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// APIKeys maps the lower-case hex SHA-256 of every configured API key to
// the user it identifies, for the api_key identity source.
func (f *File) APIKeys() map[string]string {
	keys := make(map[string]string)
	for name, u := range f.QuotaManager.Users {
		if u.APIKeySHA256 != "" {
			keys[strings.ToLower(u.APIKeySHA256)] = name
		}
	}
	return keys
}
