package engine

import (
	"time"
)

// Config configures an Engine. The zero value of every optional field means
// its documented default (see withDefaults). A Config must not be changed
// after it is passed to New or Reload.
type Config struct {
	// Tiers are the plans. At least one is required.
	Tiers map[Tier]TierConfig
	// DefaultTier is the tier of subjects with no configured or asserted
	// tier. Empty means "freemium" if defined, else the lowest-priority tier.
	DefaultTier Tier
	// DenyUnknown refuses subjects that are not configured users, carry no
	// asserted tier and have no profile (ReasonUnknownSubject), instead of
	// giving them DefaultTier.
	DenyUnknown bool
	// Actions price requests by action name. An action not listed costs
	// nothing beyond DefaultCost.
	Actions map[string]ActionConfig
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

	// Shards is the number of lock stripes, rounded up to a power of two.
	// Zero means 4 × GOMAXPROCS rounded up, at least 16.
	Shards int
	// CacheSize bounds how many subjects (and teams) are held in memory,
	// across all shards. Zero means 100 000.
	CacheSize int
	// Store holds state that is evicted or flushed. Nil means an in-memory
	// store (NewMemoryStore).
	Store Store
	// Events receives threshold and breach events. Nil discards them.
	Events Events
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// TierConfig is one plan.
type TierConfig struct {
	// Priority orders tiers for load shedding.
	Priority Priority
	// Limits are the tier's rate windows. The seed's api_calls_per_hour
	// becomes a {Period: hour, Max: N} limit named "hour".
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
	// Mode is fixed or sliding; nil (the zero Mode pointer) means Config.Window.
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

// AlertConfig is the seed's "alerts" block as it affects decisions.
type AlertConfig struct {
	// ThresholdPercent is the usage percentage of a limit at which a
	// warning is attached and EventThreshold emitted. Zero means 90.
	ThresholdPercent int
}

// Messages are client-facing texts. Empty fields take the seed's texts.
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
