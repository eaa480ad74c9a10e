package config

import (
	"bytes"
	"encoding/json"
)

// File is a whole configuration file. Its quota_manager block is a superset
// of the design document's example JSON, which loads unchanged. A File returned by Parse
// or Load has its defaults applied and has been validated; treat it as
// immutable, since reloads build a new one.
type File struct {
	QuotaManager QuotaManager `json:"quota_manager"`
	Identity     Identity     `json:"identity"`
	// Routes map a request path (and method) to an action or workflow when
	// the route's context_extensions do not name one. The file may give a
	// list of routes (the rules) or {default, rules}.
	Routes  Routes      `json:"routes"`
	Pricing Pricing     `json:"pricing"`
	Server  Server      `json:"server"`
	Tracing Tracing     `json:"tracing"`
	Store   StoreConfig `json:"store"`
	// Ledger configures the usage and audit ledger.
	Ledger LedgerConfig `json:"ledger"`
	// Admin configures the management API and dashboard (off unless its
	// addr, or --admin-addr, is set).
	Admin AdminConfig `json:"admin"`
	// RequireEncryption refuses to load the file unless it is age-encrypted.
	RequireEncryption bool `json:"require_encryption"`
}

// QuotaManager is the example configuration's quota_manager block, extended.
type QuotaManager struct {
	// Tiers are the plans, by name. At least one is required.
	Tiers map[string]Tier `json:"tiers"`
	// DefaultTier is the tier of subjects with no configured or asserted
	// tier. Empty means "freemium" if defined, else the lowest-priority tier.
	DefaultTier string `json:"default_tier"`
	// UnknownSubjects is "default" (give them DefaultTier) or "deny".
	UnknownSubjects string `json:"unknown_subjects"`
	// Window is the default mode of limits that set none: fixed or sliding.
	Window string `json:"window"`
	// Timezone is the IANA zone that calendar windows align to.
	Timezone string            `json:"timezone"`
	Actions  map[string]Action `json:"actions"`
	// UnknownActions is what a request gets whose action has no price here
	// and is in no tier's or role's features: refused (the default) or
	// priced as a named action.
	UnknownActions UnknownActions      `json:"unknown_actions"`
	Users          map[string]User     `json:"users"`
	Roles          map[string]Role     `json:"roles"`
	Workflows      map[string]Workflow `json:"workflows"`
	Teams          map[string]Team     `json:"teams"`
	Capacity       Capacity            `json:"capacity"`
	Alerts         Alerts              `json:"alerts"`
	Messages       Messages            `json:"messages"`
	Cache          Cache               `json:"cache"`
}

// Tier is one plan. The api_calls_per_X shorthands are the example configuration's form; each
// non-zero one becomes a limit named after its period ("hour").
type Tier struct {
	// APICallsPerMinute, APICallsPerHour, APICallsPerDay and
	// APICallsPerMonth limit calls per calendar period; zero means no limit.
	APICallsPerMinute int64 `json:"api_calls_per_minute"`
	APICallsPerHour   int64 `json:"api_calls_per_hour"`
	APICallsPerDay    int64 `json:"api_calls_per_day"`
	APICallsPerMonth  int64 `json:"api_calls_per_month"`
	// Priority is low (the default), medium, high or critical.
	Priority string  `json:"priority"`
	Limits   []Limit `json:"limits"`
	Tokens   Tokens  `json:"tokens"`
	// Features lists the actions and workflows the tier may use; nil (the
	// key absent) means all of them, an empty list means none.
	Features []string `json:"features"`
	// MaxDelay admits a request that fits within this delay instead of
	// refusing it; zero means never delay.
	MaxDelay Duration `json:"max_delay"`
	// FailureMode is what happens when no decision can be made: closed
	// (refuse, the default) or open (allow).
	FailureMode string `json:"failure_mode"`
	// UpgradeURL is offered to refused clients; empty means none.
	UpgradeURL string `json:"upgrade_url"`
}

// Limit is the general form of a limit: Max units Per period.
type Limit struct {
	// Name identifies the limit within its owner; limits with the same name
	// share a counter. Empty means derived from the period and actions.
	Name string `json:"name"`
	Max  int64  `json:"max"`
	// Per is minute, hour, day, week, month, second or a Go duration.
	Per string `json:"per"`
	// Unit is calls (the default), units (the request's words) or tokens.
	Unit string `json:"unit"`
	// Window is fixed or sliding; empty means quota_manager.window.
	Window string `json:"window"`
	// Actions restricts the limit to these actions; empty means all.
	Actions []string `json:"actions"`
}

// Tokens is a periodic token grant: Grant tokens at the start of every
// Every period, or Unlimited.
type Tokens struct {
	Grant     int64  `json:"grant"`
	Every     string `json:"every"`
	Unlimited bool   `json:"unlimited"`
}

// Action prices an action: tokens_per_call + ceil(units × tokens_per_1000_units / 1000).
type Action struct {
	TokensPer1000Units int64 `json:"tokens_per_1000_units"`
	// Unit names what the request's units count ("words"); informational.
	Unit          string `json:"unit"`
	TokensPerCall int64  `json:"tokens_per_call"`
	// Settle is how the charge is settled from the response (settle.go);
	// nil refunds a priced action on 5xx and on no response.
	Settle *Settle `json:"settle"`
}

// UnknownActions is the policy for actions without a price: a typo in a
// route's context_extensions must neither make a priced endpoint free nor
// tell a customer their plan lacks it.
type UnknownActions struct {
	// Policy is deny (403 unknown_action, nothing charged; the default) or
	// price (priced and limited as PriceAs).
	Policy string `json:"policy"`
	// PriceAs names a priced action, with policy: price.
	PriceAs string `json:"price_as"`
}

// User is a configured subject.
type User struct {
	Tier  string   `json:"tier"`
	Team  string   `json:"team"`
	Roles []string `json:"roles"`
	// Credits is the user's starting credit balance.
	Credits int64 `json:"credits"`
	// APIKeySHA256 is the hex SHA-256 of the user's API key, for the
	// api_key identity source. The key itself is never stored.
	APIKeySHA256 string  `json:"api_key_sha256"`
	Limits       []Limit `json:"limits"`
}

// Role adds limits and features for every subject holding it.
type Role struct {
	Limits   []Limit  `json:"limits"`
	Features []string `json:"features"`
}

// Workflow adds per-subject limits to requests in the workflow and may
// raise their priority.
type Workflow struct {
	Limits []Limit `json:"limits"`
	// Priority overrides the tier's; empty means the tier's.
	Priority string `json:"priority"`
}

// Team is a group sharing a token balance and team-wide limits.
type Team struct {
	Members []string `json:"members"`
	Tokens  Tokens   `json:"tokens"`
	Credits int64    `json:"credits"`
	Limits  []Limit  `json:"limits"`
}

// Capacity drives load shedding by priority and scales every limit.
type Capacity struct {
	// RequestsPerSecond is the sustainable admitted rate; zero disables
	// shedding.
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Factor scales every limit; zero means 1.
	Factor float64 `json:"factor"`
	// ShedAt maps a priority (low, medium, high) to the utilization above
	// which its requests are shed. Critical is never shed.
	ShedAt map[string]float64 `json:"shed_at"`
}

// Alerts is the example configuration's alerts block, extended with the settings of each
// channel and of the anomaly detector. The wiring turns it into the
// notifier's options; see package notify for what each setting does.
type Alerts struct {
	Enabled bool `json:"enabled"`
	// ThresholdPercentage is the usage percentage of a limit that triggers
	// a warning, 1 to 100; zero means 90.
	ThresholdPercentage int `json:"threshold_percentage"`
	// Channels are where alerts go: email, dashboard or webhook.
	Channels []string `json:"channels"`
	// QueueSize bounds the alerts waiting for delivery; zero means 1024.
	QueueSize int `json:"queue_size"`
	// DedupSize bounds the recent alert keys kept for deduplication; zero
	// means 100 000.
	DedupSize int            `json:"dedup_size"`
	Webhook   AlertWebhook   `json:"webhook"`
	Email     AlertEmail     `json:"email"`
	Dashboard AlertDashboard `json:"dashboard"`
	Anomaly   AlertAnomaly   `json:"anomaly"`
	// Messages overrides the texts of alerts.
	Messages AlertMessages `json:"messages"`
}

// AlertWebhook is the webhook channel: each alert is POSTed as JSON,
// signed with HMAC-SHA256.
type AlertWebhook struct {
	// URL is the http or https endpoint. Empty makes the channel inactive.
	URL string `json:"url"`
	// Secret is the HMAC key. Prefer SecretEnv, or an encrypted file.
	Secret Secret `json:"secret"`
	// SecretEnv names an environment variable holding the HMAC key, read
	// once at start-up.
	SecretEnv string `json:"secret_env"`
	// MaxRetries is how many times a failed delivery is retried; zero
	// means 3, -1 never.
	MaxRetries int `json:"max_retries"`
	// Timeout bounds one delivery attempt; zero means 5s.
	Timeout Duration `json:"timeout"`
	// Backoff is the first wait between retries, doubled up to MaxBackoff;
	// zero means 500ms.
	Backoff Duration `json:"backoff"`
	// MaxBackoff caps the wait between retries; zero means 30s.
	MaxBackoff Duration `json:"max_backoff"`
}

// AlertEmail is the email channel: SMTP with STARTTLS and AUTH PLAIN.
type AlertEmail struct {
	// SMTPAddr is the server's host:port. Empty makes the channel inactive.
	SMTPAddr string `json:"smtp_addr"`
	// StartTLS is required (the default) or disabled.
	StartTLS string `json:"starttls"`
	// Username and Password authenticate; PasswordEnv names an environment
	// variable holding the password, read once at start-up.
	Username    string `json:"username"`
	Password    Secret `json:"password"`
	PasswordEnv string `json:"password_env"`
	// From is the sender address.
	From string `json:"from"`
	// ToOperators receive every alert.
	ToOperators []string `json:"to_operators"`
	// UserAddresses maps a subject id to the user's address.
	UserAddresses map[string]string `json:"user_addresses"`
	// UserAddressTemplate builds a user's address: "{subject}" is replaced
	// by the subject id.
	UserAddressTemplate string `json:"user_address_template"`
	// UpgradeURL is the upgrade link offered in user emails.
	UpgradeURL string `json:"upgrade_url"`
	// MaxRetries, Timeout, Backoff and MaxBackoff are as for the webhook;
	// Timeout defaults to 10s.
	MaxRetries int      `json:"max_retries"`
	Timeout    Duration `json:"timeout"`
	Backoff    Duration `json:"backoff"`
	MaxBackoff Duration `json:"max_backoff"`
}

// AlertDashboard is the in-memory dashboard feed.
type AlertDashboard struct {
	// Size is how many recent alerts the feed keeps; zero means 1000.
	Size int `json:"size"`
}

// AlertAnomaly is the anomaly detector: a subject whose count in a window
// exceeds Factor times its own moving baseline is reported.
type AlertAnomaly struct {
	Enabled bool `json:"enabled"`
	// Window is the counting window; zero means 1m.
	Window Duration `json:"window"`
	// Factor is how many times the baseline a count must exceed; zero
	// means 5.
	Factor float64 `json:"factor"`
	// MinRate is the rate, in requests per second, below which nothing is
	// reported; zero means 1.
	MinRate float64 `json:"min_rate"`
	// WarmUp is how many windows of history a subject needs; zero means 5.
	WarmUp int `json:"warm_up"`
	// Smoothing is the weight of the newest window in the baseline, in
	// (0, 1]; zero means 0.2.
	Smoothing float64 `json:"smoothing"`
	// MaxSubjects bounds the baselines kept; zero means 100 000.
	MaxSubjects int `json:"max_subjects"`
}

// AlertMessages override the texts of alerts; empty fields keep the
// defaults.
type AlertMessages struct {
	// Warning is a format with one %s for the period adjective ("daily").
	Warning             string `json:"warning"`
	Exceeded            string `json:"exceeded"`
	BalanceLow          string `json:"balance_low"`
	InsufficientBalance string `json:"insufficient_balance"`
	Anomaly             string `json:"anomaly"`
}

// AdminConfig is the admin block: the management HTTP API and dashboard.
// The zero value serves nothing.
type AdminConfig struct {
	// Addr is the listen address, such as "127.0.0.1:8081"; empty turns
	// the admin server off.
	Addr string `json:"addr"`
	// Tokens are the accepted bearer tokens, by their SHA-256.
	Tokens []AdminToken `json:"tokens"`
	// TLS serves HTTPS, and with client_ca_file requires client
	// certificates.
	TLS TLS `json:"tls"`
	// TraceURL links a decision to its trace; "{trace_id}" is replaced.
	TraceURL string `json:"trace_url"`
	// AuthFailuresPerMinute bounds failed authentications per presented
	// token; zero means 10.
	AuthFailuresPerMinute int `json:"auth_failures_per_minute"`
	// AuthFailuresPerAddressPerMinute bounds failed authentications per
	// client address; zero means 20 times AuthFailuresPerMinute.
	AuthFailuresPerAddressPerMinute int `json:"auth_failures_per_address_per_minute"`
}

// AdminToken is one accepted bearer token of the admin API.
type AdminToken struct {
	// Name names the actor in logs and ledger records.
	Name string `json:"name"`
	// SHA256 is the token's SHA-256 in hex; the token itself is never
	// configured.
	SHA256 string `json:"sha256"`
	// Scopes are read, write or admin; the highest counts.
	Scopes []string `json:"scopes"`
	// Team restricts the token to one team; empty means unrestricted.
	Team string `json:"team"`
}

// Messages override the client-facing texts; empty fields keep the defaults.
type Messages struct {
	Exceeded string `json:"exceeded"`
	// Warning is a format with one %s for the period adjective ("daily").
	Warning             string `json:"warning"`
	InsufficientBalance string `json:"insufficient_balance"`
	// FeatureNotInPlan is a format with two %s: the feature, then the tier
	// that includes it.
	FeatureNotInPlan string `json:"feature_not_in_plan"`
	Shed             string `json:"shed"`
	NoIdentity       string `json:"no_identity"`
	UnknownSubject   string `json:"unknown_subject"`
	// UnknownAction is what a client refused for an unknown action reads;
	// keep it neutral (the operator learns the action from the log).
	UnknownAction string `json:"unknown_action"`
}

// Cache bounds the engine's memory.
type Cache struct {
	// Subjects is how many subjects are held in memory; zero means 100 000.
	Subjects int `json:"subjects"`
	// Shards is the number of lock stripes; zero means automatic.
	Shards int `json:"shards"`
}

// Identity says where the caller's identity comes from.
type Identity struct {
	// Sources are tried in order: jwt, mtls, header, api_key. Absent means
	// jwt, mtls, then header if it is trusted, then api_key.
	Sources []string     `json:"sources"`
	JWT     JWTSource    `json:"jwt"`
	MTLS    MTLSSource   `json:"mtls"`
	Header  HeaderSource `json:"header"`
	APIKey  APIKeySource `json:"api_key"`
	// StripHeaders are removed from the upstream request: headers a client
	// could use to spoof a tier.
	StripHeaders []string `json:"strip_headers"`
}

// JWTSource reads the payload that Envoy's jwt_authn filter verified and
// stored in the request's metadata.
type JWTSource struct {
	// Filter is the metadata namespace (the filter name).
	Filter string `json:"filter"`
	// PayloadKey is jwt_authn's payload_in_metadata key.
	PayloadKey   string `json:"payload_key"`
	SubjectClaim string `json:"subject_claim"`
	// TierClaim, RolesClaim and TeamClaim name claims asserting the tier,
	// roles and team; empty means the claim is not used.
	TierClaim  string `json:"tier_claim"`
	RolesClaim string `json:"roles_claim"`
	TeamClaim  string `json:"team_claim"`
}

// MTLSSource takes the principal (SPIFFE id or certificate subject) from
// attributes.source.principal. It has no settings yet.
type MTLSSource struct{}

// HeaderSource reads the subject from a header that Envoy sets after
// authentication. It is used only when Trusted is true.
type HeaderSource struct {
	// Name is the header's lower-case name; absent means x-user-id.
	Name    string `json:"name"`
	Trusted bool   `json:"trusted"`
}

// APIKeySource reads an API key from a header and looks its SHA-256 up
// among the users' api_key_sha256.
type APIKeySource struct {
	Header string `json:"header"`
}

// Routes is the routes block: the rules tried in order on the normalized
// path, and what becomes of a request that matches none. In a file it is
// either a list (the rules, with Default left at call) or a mapping with the
// keys default and rules.
type Routes struct {
	// Default is what a request that names no action or workflow in its
	// context_extensions and matches no rule gets: call (priced as a plain
	// API call, the default) or deny (refused with 403 no_route).
	Default string `json:"default"`
	// Rules are tried in order; the first match wins.
	Rules []Route `json:"rules"`
	// list records that the file gave the short form, for error paths.
	list bool
}

// UnmarshalJSON accepts a list of routes (the rules) or an object with
// default and rules. Fields the data does not set keep their values.
func (r *Routes) UnmarshalJSON(data []byte) error {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		r.list = true
		return json.Unmarshal(data, &r.Rules)
	}
	type plain Routes
	return json.Unmarshal(data, (*plain)(r))
}

// RulePath returns the path in the file of rule i: routes.rules[i], or
// routes[i] when the file gave the rules as a list.
func (r *Routes) RulePath(i int) string {
	if r.list {
		return index("routes", i)
	}
	return index("routes.rules", i)
}

// Route maps requests to an action or workflow. An empty Method matches
// every method.
type Route struct {
	PathPrefix string `json:"path_prefix"`
	Method     string `json:"method"`
	Action     string `json:"action"`
	Workflow   string `json:"workflow"`
}

// Pricing holds request-pricing rules that are not per action.
type Pricing struct {
	// PartialBodyWordsPerByte prices a body that Envoy truncated: the words
	// of the missing bytes are estimated at this rate.
	PartialBodyWordsPerByte float64 `json:"partial_body_words_per_byte"`
	// MaxBodyBytes is the largest request body, in bytes, that is priced:
	// the size a truncated body claims in content-length, or a body
	// received whole. A larger one is refused with 413 request_too_large
	// and charges nothing. 0 means 64 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes"`
}

// Server configures the listeners.
type Server struct {
	GRPCAddr             string    `json:"grpc_addr"`
	HTTPAddr             string    `json:"http_addr"`
	TLS                  TLS       `json:"tls"`
	MaxConcurrentStreams uint32    `json:"max_concurrent_streams"`
	Keepalive            Keepalive `json:"keepalive"`
	// GracePeriod is how long shutdown waits for in-flight requests.
	GracePeriod Duration `json:"grace_period"`
	Reflection  bool     `json:"reflection"`
	// InsufficientBalanceStatus is the HTTP status of a denial for lack
	// of tokens (402 by default).
	InsufficientBalanceStatus int `json:"insufficient_balance_status"`
	// MaxReceiveBytes is the largest CheckRequest the gRPC server accepts,
	// in bytes (8 MiB by default). Keep it well above Envoy's
	// with_request_body.max_request_bytes plus the request headers: a larger
	// Check is refused by the transport, undecided (it is logged and counted
	// in quota_checks_undecided_total).
	MaxReceiveBytes int64 `json:"max_receive_bytes"`
	// AccessLog is the settlement service Envoy's access logger streams to.
	AccessLog AccessLog `json:"access_log"`
}

// AccessLog configures the AccessLogService that settles charges from
// Envoy's access log (README "Settlement").
type AccessLog struct {
	// Enabled serves it (true by default).
	Enabled bool `json:"enabled"`
	// Addr gives it a listener of its own; empty serves it on grpc_addr.
	Addr string `json:"addr"`
	// MaxEntries bounds the log entries of one message (1000 by default);
	// a larger batch is refused whole.
	MaxEntries int `json:"max_entries"`
	// PendingSize bounds how many allowed decisions wait for their log
	// entry, and PendingMaxAge how long (100000 and 15m by default); what
	// is dropped is counted (quota_settlements_pending_dropped_total).
	PendingSize   int      `json:"pending_size"`
	PendingMaxAge Duration `json:"pending_max_age"`
}

// TLS configures a listener's certificate: the gRPC listener's
// (server.tls) or the admin server's (admin.tls). All empty means
// plaintext; ClientCAFile set means client certificates are required.
type TLS struct {
	CertFile     string `json:"cert_file"`
	KeyFile      string `json:"key_file"`
	ClientCAFile string `json:"client_ca_file"`
}

// Keepalive configures gRPC keepalive.
type Keepalive struct {
	Time    Duration `json:"time"`
	Timeout Duration `json:"timeout"`
	// MinTime is the least interval a client may ping at.
	MinTime Duration `json:"min_time"`
}

// Tracing configures span sampling, as fractions from 0 to 1.
type Tracing struct {
	SampleAllowed  float64 `json:"sample_allowed"`
	SampleRejected float64 `json:"sample_rejected"`
	// RawSubject puts the subject id in spans as is instead of hashed.
	RawSubject bool `json:"raw_subject"`
}

// StoreConfig selects where evicted and flushed engine state goes.
type StoreConfig struct {
	// Kind is memory, sqlite or redis. Empty (the default) means sqlite in
	// the server's data directory when it has one (--data-dir), memory
	// otherwise.
	Kind string `json:"kind"`
	// Path is the sqlite database file; empty means the server's data
	// directory: DIR/ledger.db, shared with the ledger, when the ledger is
	// the default one there, else DIR/state.db.
	Path string `json:"path"`
	// FlushInterval bounds how much usage a crash may lose in batch mode.
	FlushInterval Duration `json:"flush_interval"`
	// Durability is batch (the default) or sync; async, its old name, is
	// read as batch.
	Durability string `json:"durability"`
	// Redis configures the shared Redis store (kind: redis).
	Redis RedisStoreConfig `json:"redis"`
}

// RedisStoreConfig is the Redis that several replicas share: one server
// (addr), a Redis Cluster (cluster) or a primary watched by Sentinels
// (sentinel); exactly one of the three is set.
type RedisStoreConfig struct {
	// Addr is the server's host:port.
	Addr string `json:"addr"`
	// Cluster lists seed nodes of a Redis Cluster.
	Cluster RedisClusterConfig `json:"cluster"`
	// Sentinel names the primary and the Sentinels that watch it.
	Sentinel RedisSentinelConfig `json:"sentinel"`
	// Username and Password authenticate; DB selects the database.
	Username string `json:"username"`
	Password string `json:"password"`
	DB       int    `json:"db"`
	// Timeout is the deadline of every call on the Check path; zero
	// means 50ms.
	Timeout Duration `json:"timeout"`
	// Prefix starts every key; empty means "qg".
	Prefix string `json:"prefix"`
	// Lease, when positive, is the block of a subject's limit a replica
	// reserves and serves from memory (leased mode); zero means exact.
	Lease int64 `json:"lease"`
	// WaitReplicas, when positive, makes every charge wait (within
	// timeout) until that many replicas hold it, so a failover loses no
	// admitted charge; zero means asynchronous replication.
	WaitReplicas int `json:"wait_replicas"`
}

// RedisClusterConfig is a Redis Cluster: Addrs are some of its nodes
// (host:port each); the client learns the rest from them.
type RedisClusterConfig struct {
	Addrs []string `json:"addrs"`
}

// RedisSentinelConfig is a primary that Sentinels watch: Master is the
// name the Sentinels know it by, Addrs the Sentinels (host:port each), and
// Password, when set, authenticates to the Sentinels (the store's
// username and password authenticate to the data servers).
type RedisSentinelConfig struct {
	Master   string   `json:"master"`
	Addrs    []string `json:"addrs"`
	Password string   `json:"password"`
}
