package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Default values applied by withDefaults.
const (
	defaultThresholdPercent = 90
	defaultCacheSize        = 100_000
	defaultFlushInterval    = 100 * time.Millisecond
	defaultExceeded         = "Quota exceeded. Upgrade your plan or wait for the reset."
	defaultWarning          = "Approaching %s limit."
	defaultInsufficient     = "Insufficient token balance. Upgrade your plan or add credits."
	defaultFeatureNotInPlan = "%s is not included in your plan. Upgrade to %s."
	defaultShed             = "Service is under heavy load. Please retry shortly."
	defaultNoIdentity       = "Request has no identity."
	defaultUnknownSubject   = "Unknown subject."
	defaultTooLarge         = "Request too large: it can never fit within your plan's limits. Send a smaller request."
)

// Rules are the reloadable part of an Engine's configuration: what the
// engine decides by. New takes the first Rules and Reload swaps in the
// next, compiled whole. The zero value of every optional field means its
// documented default (see withDefaults). Rules must not be changed after
// they are passed to New or Reload.
type Rules struct {
	// Tiers are the plans. At least one is required.
	Tiers map[Tier]TierConfig
	// DefaultTier is the tier of subjects with no configured or asserted
	// tier. Empty means "freemium" if defined, else the lowest-priority tier.
	DefaultTier Tier
	// DenyUnknown refuses subjects that are not configured users, carry no
	// asserted tier and have no profile (ReasonUnknownSubject), instead of
	// giving them DefaultTier.
	DenyUnknown bool
	// Actions price requests by action name. An action named only in a
	// tier's or role's Features is free; a request naming an action that
	// is in neither follows UnknownActions.
	Actions map[string]ActionConfig
	// UnknownActions is what a request whose action is unknown (see
	// Actions) gets. The zero value refuses it (ReasonUnknownAction).
	UnknownActions UnknownActions
	// Users, Roles, Workflows and Teams carry per-entity limits and
	// settings ("customizable limits").
	Users     map[string]UserConfig
	Roles     map[string]RoleConfig
	Workflows map[string]WorkflowConfig
	Teams     map[string]TeamConfig
	// Alerts sets the warning threshold and texts.
	Alerts AlertConfig
	// Messages overrides the client-facing texts.
	Messages Messages
	// Capacity drives priority shedding and the capacity factor.
	Capacity CapacityConfig
	// Location is the time zone that calendar windows align to. Nil means UTC.
	Location *time.Location
	// Window is the default window mode for limits that do not set one.
	Window WindowMode
}

// Options are the fixed part of an Engine's configuration: its wiring,
// set once by New; Reload does not change them. The zero value of every
// field means its documented default (see withDefaults). Options must not
// be changed after they are passed to New.
type Options struct {
	// Shards is the number of lock stripes, rounded up to a power of two.
	// Zero means 4 × GOMAXPROCS rounded up, at least 16.
	Shards int
	// CacheSize bounds how many subjects (and teams) are held in memory,
	// across all shards. Zero means 100 000.
	CacheSize int
	// Store holds state that is evicted or flushed. Nil means an in-memory
	// store (NewMemoryStore).
	Store Store
	// Authority, if set, holds the window counters and balances shared by
	// several replicas (store/redis): each Charge that the local cache
	// cannot refuse is checked and charged through it, outside any lock.
	// An Authority that is also a StateMover has a subject's state moved
	// when its team changes (SetProfile, Reload), before the change takes
	// effect. Nil means this engine is the authority (single node).
	Authority Authority
	// Events receives threshold and breach events. Nil discards them.
	Events Events
	// Logger receives what an operator must know and no caller is told,
	// such as a stored profile that no longer validates (logged once per
	// subject and reload). Nil discards it.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// SyncWrites makes Charge save the changed state to the Store before
	// it returns (outside any lock), so that an acknowledged charge is never
	// lost. False saves it at the next Flush (see Run).
	SyncWrites bool
	// StoreObserver, if set, is told how long every call to Store took
	// and whether it failed (the quota.store.duration histogram).
	StoreObserver StoreObserver
	// Deferrer, with SyncWrites, takes over Charge's saves: the snapshots
	// of the state a decision changed go to Deferrer.Defer, while the
	// subject's lock is still held, and back to the caller in
	// Decision.Unsaved, instead of to the Store. The caller then commits
	// them, with whatever else must be durable with them (store/durable:
	// the decision's ledger record). Nil makes Charge save them itself.
	// Setting it without SyncWrites is an error.
	Deferrer Deferrer
	// FlushInterval is how often Run saves dirty state to the Store. Zero
	// means 100ms.
	FlushInterval time.Duration
	// PendingSize bounds how many decisions wait for their settlement
	// (Settle), settled ids remembered included; the oldest is dropped
	// (counted as evicted) to make room. Zero means 100 000. Fixed at New.
	PendingSize int
	// PendingMaxAge is how long a decision waits for its settlement, and
	// how long a settled id is remembered. Zero means 15 minutes. Fixed at
	// New.
	PendingMaxAge time.Duration
}

// TierConfig is one plan.
type TierConfig struct {
	// Priority orders tiers for load shedding.
	Priority Priority
	// Limits are the tier's rate windows. The configuration file's
	// api_calls_per_hour becomes a {Period: hour, Max: N} limit named "hour".
	Limits []LimitConfig
	// Tokens is the periodic token grant; the zero value grants nothing.
	Tokens TokenGrant
	// Features lists the actions and workflows the tier may use. Nil means
	// all of them.
	Features []string
	// MaxDelay admits a request that would fit within this delay instead
	// of refusing it. Zero means never delay.
	MaxDelay time.Duration
	// FailureMode applies when no decision can be made.
	FailureMode FailureMode
	// UpgradeURL is offered to refused clients; empty means none.
	UpgradeURL string
}

// LimitConfig is "Max units per Period".
type LimitConfig struct {
	// Name identifies the limit within its owner; empty means derived from
	// the period and action, e.g. "hour" or "translate:day". Two limits
	// with the same Name share one counter, which is how a user override
	// replaces a tier limit and how usage survives a tier upgrade.
	Name   string
	Period Period
	Max    int64
	// Unit is what the limit counts; the zero value counts calls.
	Unit Unit
	// Mode is fixed or sliding; nil (the zero Mode pointer) means Rules.Window.
	Mode *WindowMode
	// Actions restricts the limit to these actions; nil means every action.
	Actions []string
}

// TokenGrant is a periodic allowance of tokens: at the start of every
// Period the allowance is set to Amount (unused tokens do not carry over).
// Credits added through AddCredits come on top and never reset.
type TokenGrant struct {
	Amount int64
	Period Period
	// Unlimited means the tier never runs out of tokens (costs are still
	// computed and reported).
	Unlimited bool
}

// ActionConfig prices an action: Cost = PerCall + ceil(Units × PerThousand / 1000).
type ActionConfig struct {
	PerCall     int64
	PerThousand int64
	// Unit names what Units counts ("words"); informational.
	Unit string
	// Settle is how a charge is settled from the response (Settle). Nil
	// means DefaultSettleRule().
	Settle *SettleRule
}

// UserConfig is a configured subject.
type UserConfig struct {
	Tier  Tier
	Team  string
	Roles []string
	// Limits override tier limits with the same Name, or add new ones.
	Limits []LimitConfig
	// Credits is the subject's starting credit balance, applied once when
	// the subject is first seen (no saved state).
	Credits int64
}

// RoleConfig adds limits for every subject with the role.
type RoleConfig struct {
	Limits []LimitConfig
	// Features extends the tier's features for holders of the role.
	Features []string
}

// WorkflowConfig adds per-subject limits for requests in the workflow.
type WorkflowConfig struct {
	Limits []LimitConfig
	// Priority overrides the tier's priority for requests in the workflow
	// (critical workflows keep being served under load). Nil means the tier's.
	Priority *Priority
}

// TeamConfig is a group that shares a token balance and team-wide limits.
type TeamConfig struct {
	Members []string
	// Tokens, if set, is the team's shared balance grant; members' costs
	// are paid from it instead of their own balances.
	Tokens TokenGrant
	// Credits is the team's starting credit balance.
	Credits int64
	// Limits count the whole team's usage together.
	Limits []LimitConfig
}

// AlertConfig is the configuration's "alerts" block as it affects decisions.
type AlertConfig struct {
	// ThresholdPercent is the usage percentage of a limit at which a
	// warning is attached and EventThreshold emitted. Zero means 90.
	ThresholdPercent int
}

// Messages are client-facing texts. Empty fields take the default texts
// documented on each field.
type Messages struct {
	// Exceeded defaults to "Quota exceeded. Upgrade your plan or wait for the reset."
	Exceeded string
	// Warning is a format with one %s for the period adjective; it defaults
	// to "Approaching %s limit." ("Approaching daily limit.").
	Warning string
	// InsufficientBalance defaults to "Insufficient token balance. Upgrade your plan or add credits."
	InsufficientBalance string
	// FeatureNotInPlan is a format with %s for the feature and %s for the
	// tier that includes it.
	FeatureNotInPlan string
	// Shed defaults to "Service is under heavy load. Please retry shortly."
	Shed string
	// NoIdentity defaults to "Request has no identity."
	NoIdentity string
	// UnknownSubject defaults to "Unknown subject."
	UnknownSubject string
	// RequestTooLarge defaults to "Request too large: it can never fit
	// within your plan's limits. Send a smaller request." The decision's
	// Binding names the limit, when one applies.
	RequestTooLarge string
	// UnknownAction is the client's text for ReasonUnknownAction. It
	// defaults to a neutral "This request is not available. ..." that
	// names nothing of the configuration.
	UnknownAction string
}

// CapacityConfig drives priority shedding ("dynamic throttling based on
// quotas and system load").
type CapacityConfig struct {
	// RequestsPerSecond is the admitted rate the system can sustain. Zero
	// disables shedding.
	RequestsPerSecond float64
	// Factor scales every limit (0.5 halves them). Zero means 1.
	Factor float64
	// ShedAt maps a priority to the utilization (admitted rate divided by
	// capacity) above which its requests are shed. Missing priorities take
	// the defaults: low 0.8, medium 0.9, high 1.0; critical is never shed.
	ShedAt map[Priority]float64
}

// withDefaults returns a copy of r with every zero optional field set to
// its documented default. Maps are shared with r, which must not change.
func (r Rules) withDefaults() Rules {
	if r.DefaultTier == "" {
		r.DefaultTier = defaultTierOf(r.Tiers)
	}
	if r.Alerts.ThresholdPercent == 0 {
		r.Alerts.ThresholdPercent = defaultThresholdPercent
	}
	r.Messages = r.Messages.withDefaults()
	if r.Capacity.Factor == 0 {
		r.Capacity.Factor = 1
	}
	if r.Location == nil {
		r.Location = time.UTC
	}
	return r
}

// withDefaults returns a copy of o with every zero field set to its
// documented default.
func (o Options) withDefaults() Options {
	if o.Shards <= 0 {
		o.Shards = 4 * runtime.GOMAXPROCS(0)
		if o.Shards < 16 {
			o.Shards = 16
		}
	}
	o.Shards = ceilPow2(o.Shards)
	if o.CacheSize <= 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.Store == nil {
		o.Store = NewMemoryStore()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = defaultFlushInterval
	}
	if o.PendingSize <= 0 {
		o.PendingSize = defaultPendingSize
	}
	if o.PendingMaxAge <= 0 {
		o.PendingMaxAge = defaultPendingMaxAge
	}
	return o
}

func (m Messages) withDefaults() Messages {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&m.Exceeded, defaultExceeded)
	def(&m.Warning, defaultWarning)
	def(&m.InsufficientBalance, defaultInsufficient)
	def(&m.FeatureNotInPlan, defaultFeatureNotInPlan)
	def(&m.Shed, defaultShed)
	def(&m.NoIdentity, defaultNoIdentity)
	def(&m.UnknownSubject, defaultUnknownSubject)
	def(&m.RequestTooLarge, defaultTooLarge)
	def(&m.UnknownAction, defaultUnknownAction)
	return m
}

// defaultTierOf returns "freemium" if tiers has it, else the tier with the
// lowest priority (the first by name among equals).
func defaultTierOf(tiers map[Tier]TierConfig) Tier {
	if _, ok := tiers["freemium"]; ok {
		return "freemium"
	}
	var best Tier
	for name, tc := range tiers {
		if best == "" || tc.Priority < tiers[best].Priority ||
			(tc.Priority == tiers[best].Priority && name < best) {
			best = name
		}
	}
	return best
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// Validate reports every problem in c, each naming the field path and the
// offending value. Every error wraps ErrInvalidConfig.
func (r Rules) Validate() error {
	v := &validator{}
	if len(r.Tiers) == 0 {
		v.add("tiers", "at least one tier is required")
	}
	for _, name := range sortedKeys(r.Tiers) {
		validateTier(v, "tiers."+string(name), name, r.Tiers[name])
	}
	if r.DefaultTier != "" {
		if _, ok := r.Tiers[r.DefaultTier]; !ok {
			v.add("default_tier", "unknown tier %q: define it under tiers", r.DefaultTier)
		}
	}
	for _, name := range sortedKeys(r.Actions) {
		a := r.Actions[name]
		p := "actions." + name
		if name == "" {
			v.add("actions", "an action name must not be empty")
		}
		if a.PerCall < 0 {
			v.add(p+".per_call", "must be >= 0, got %d", a.PerCall)
		}
		if a.PerThousand < 0 {
			v.add(p+".per_thousand", "must be >= 0, got %d", a.PerThousand)
		}
		checkQuantity(v, p+".per_call", a.PerCall)
		checkQuantity(v, p+".per_thousand", a.PerThousand)
		validateSettle(v, p+".settle", a.Settle)
	}
	validateUnknownActions(v, &r)
	for _, name := range sortedKeys(r.Users) {
		u := r.Users[name]
		p := "users." + name
		if name == "" || strings.HasPrefix(name, teamKeyPrefix) {
			v.add("users", "invalid user id %q: must be non-empty and not start with %q", name, teamKeyPrefix)
		}
		if u.Tier != "" {
			if _, ok := r.Tiers[u.Tier]; !ok {
				v.add(p+".tier", "unknown tier %q: define it under tiers", u.Tier)
			}
		}
		if u.Credits < 0 {
			v.add(p+".credits", "must be >= 0, got %d", u.Credits)
		}
		checkQuantity(v, p+".credits", u.Credits)
		validateLimits(v, p+".limits", u.Limits)
	}
	for _, name := range sortedKeys(r.Roles) {
		validateLimits(v, "roles."+name+".limits", r.Roles[name].Limits)
	}
	for _, name := range sortedKeys(r.Workflows) {
		w := r.Workflows[name]
		validateLimits(v, "workflows."+name+".limits", w.Limits)
		if w.Priority != nil && (*w.Priority < PriorityLow || *w.Priority > PriorityCritical) {
			v.add("workflows."+name+".priority", "must be low, medium, high or critical, got %d", int(*w.Priority))
		}
	}
	validateTeams(v, r.Teams)
	validateGlobals(v, r)
	return v.err()
}

func validateTier(v *validator, p string, name Tier, t TierConfig) {
	if name == "" {
		v.add("tiers", "a tier name must not be empty")
	}
	if t.Priority < PriorityLow || t.Priority > PriorityCritical {
		v.add(p+".priority", "must be low, medium, high or critical, got %d", int(t.Priority))
	}
	validateLimits(v, p+".limits", t.Limits)
	validateGrant(v, p+".tokens", t.Tokens)
	if t.MaxDelay < 0 {
		v.add(p+".max_delay", "must be >= 0, got %s", t.MaxDelay)
	}
	if t.FailureMode != FailClosed && t.FailureMode != FailOpen {
		v.add(p+".failure_mode", "must be open or closed, got %d", int(t.FailureMode))
	}
}

func validateTeams(v *validator, teams map[string]TeamConfig) {
	memberOf := map[string]string{}
	for _, name := range sortedKeys(teams) {
		t := teams[name]
		p := "teams." + name
		if name == "" {
			v.add("teams", "a team name must not be empty")
		}
		for i, m := range t.Members {
			if other, ok := memberOf[m]; ok && other != name {
				v.add(fmt.Sprintf("%s.members[%d]", p, i), "%q is already a member of team %q: a subject belongs to one team", m, other)
			}
			memberOf[m] = name
		}
		validateGrant(v, p+".tokens", t.Tokens)
		if t.Credits < 0 {
			v.add(p+".credits", "must be >= 0, got %d", t.Credits)
		}
		checkQuantity(v, p+".credits", t.Credits)
		validateLimits(v, p+".limits", t.Limits)
	}
}

func validateGlobals(v *validator, r Rules) {
	if th := r.Alerts.ThresholdPercent; th < 0 || th > 100 {
		v.add("alerts.threshold_percentage", "must be between 0 and 100, got %d", th)
	}
	if r.Window != WindowFixed && r.Window != WindowSliding {
		v.add("window", "must be fixed or sliding, got %d", int(r.Window))
	}
	if r.Capacity.RequestsPerSecond < 0 || math.IsNaN(r.Capacity.RequestsPerSecond) {
		v.add("capacity.requests_per_second", "must be >= 0, got %g", r.Capacity.RequestsPerSecond)
	}
	if r.Capacity.Factor < 0 || math.IsNaN(r.Capacity.Factor) || math.IsInf(r.Capacity.Factor, 0) {
		v.add("capacity.factor", "must be > 0, got %g", r.Capacity.Factor)
	}
	for p, at := range r.Capacity.ShedAt {
		if at <= 0 || math.IsNaN(at) {
			v.add("capacity.shed_at."+p.String(), "must be > 0, got %g", at)
		}
	}
}

// Validate reports every problem in o, each naming the field and the
// offending value. Every error wraps ErrInvalidConfig.
func (o Options) Validate() error {
	v := &validator{}
	if o.Shards < 0 {
		v.add("shards", "must be >= 0, got %d", o.Shards)
	}
	if o.CacheSize < 0 {
		v.add("cache_size", "must be >= 0, got %d", o.CacheSize)
	}
	if o.FlushInterval < 0 {
		v.add("flush_interval", "must be >= 0, got %s", o.FlushInterval)
	}
	if o.Deferrer != nil && !o.SyncWrites {
		v.add("deferrer", "is set but sync_writes is not: deferred saves exist only with SyncWrites")
	}
	if o.PendingSize < 0 {
		v.add("pending_size", "must be >= 0, got %d", o.PendingSize)
	}
	if o.PendingMaxAge < 0 {
		v.add("pending_max_age", "must be >= 0, got %s", o.PendingMaxAge)
	}
	return v.err()
}

func validateGrant(v *validator, p string, g TokenGrant) {
	if g.Amount < 0 {
		v.add(p+".amount", "must be >= 0, got %d", g.Amount)
	}
	checkQuantity(v, p+".amount", g.Amount)
	if g.Amount > 0 || g.Period != (Period{}) {
		validatePeriod(v, p+".period", g.Period)
	}
}

func validateLimits(v *validator, p string, limits []LimitConfig) {
	seen := make(map[string]int, len(limits))
	for i, l := range limits {
		lp := fmt.Sprintf("%s[%d]", p, i)
		validatePeriod(v, lp+".period", l.Period)
		if l.Max < 0 {
			v.add(lp+".max", "must be >= 0, got %d", l.Max)
		}
		checkQuantity(v, lp+".max", l.Max)
		if l.Unit < UnitCalls || l.Unit > UnitTokens {
			v.add(lp+".unit", "must be calls, units or tokens, got %d", int(l.Unit))
		}
		if l.Mode != nil && *l.Mode != WindowFixed && *l.Mode != WindowSliding {
			v.add(lp+".mode", "must be fixed or sliding, got %d", int(*l.Mode))
		}
		if len(l.Name) > MaxLimitNameBytes {
			v.add(lp+".name", "is %d bytes long; at most %d are allowed", len(l.Name), MaxLimitNameBytes)
		}
		if len(l.Actions) > MaxLimitActions {
			v.add(lp+".actions", "lists %d actions; at most %d are allowed", len(l.Actions), MaxLimitActions)
		}
		for j, a := range l.Actions {
			if a == "" {
				v.add(fmt.Sprintf("%s.actions[%d]", lp, j), "must not be empty")
			}
		}
		name := limitName(l)
		if j, ok := seen[name]; ok {
			v.add(lp+".name", "duplicate limit name %q (also %s[%d]): give one of them a distinct name", name, p, j)
		}
		seen[name] = i
	}
}

func validatePeriod(v *validator, p string, per Period) {
	if err := CheckPeriod(per); err != nil {
		v.add(p, "%v", err)
	}
}

// CheckPeriod reports whether windows and grants support per: a calendar
// period (minute, hour, day, week, month), or a plain duration of at
// least MinPeriod and at most MaxPeriod in whole seconds. The error says
// what to use instead. Configuration files, reloads and the admin API
// all check periods with it.
func CheckPeriod(per Period) error {
	switch per.Calendar {
	case CalendarMinute, CalendarHour, CalendarDay, CalendarWeek, CalendarMonth:
		return nil
	case CalendarNone:
		switch {
		case per.Every <= 0:
			return fmt.Errorf("must be minute, hour, day, week, month or a positive duration, got %s", per.Every)
		case per.Every < MinPeriod:
			return fmt.Errorf("must be at least %s, got %s: windows count in whole seconds", MinPeriod, per.Every)
		case per.Every > MaxPeriod:
			return fmt.Errorf("must be at most %s (10 years), got %s", MaxPeriod, per.Every)
		case per.Every%time.Second != 0:
			return fmt.Errorf("must be a whole number of seconds, got %s", per.Every)
		}
		return nil
	}
	return fmt.Errorf("unknown calendar period %q: want minute, hour, day, week or month", per.Calendar)
}

// validator collects configuration problems, each a *FieldError wrapped
// with kind (nil: ErrInvalidConfig).
type validator struct {
	errs []error
	kind error
}

func (v *validator) add(path, format string, args ...any) {
	kind := v.kind
	if kind == nil {
		kind = ErrInvalidConfig
	}
	v.errs = append(v.errs, fmt.Errorf("%w: %w", kind, &FieldError{Path: path, Problem: fmt.Sprintf(format, args...)}))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
