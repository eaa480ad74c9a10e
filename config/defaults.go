package config

import (
	_ "embed"
	"slices"
	"time"
)

//go:embed default.yaml
var defaultYAML []byte

// Default returns a copy of the embedded default configuration
// (config/default.yaml): the design document's tiers and alerts, its translate
// and summarize prices, demo users and a trusted x-user-id header. It is
// what `make run` serves.
func Default() []byte { return slices.Clone(defaultYAML) }

// Values of routes.default.
const (
	RouteDefaultCall = "call"
	RouteDefaultDeny = "deny"
)

// Source names for Identity.Sources.
const (
	SourceJWT    = "jwt"
	SourceMTLS   = "mtls"
	SourceHeader = "header"
	SourceAPIKey = "api_key"
)

// Values of StoreConfig.Durability.
const (
	// DurabilityBatch saves state every store.flush_interval.
	DurabilityBatch = "batch"
	// DurabilitySync commits each charge before it is answered.
	DurabilitySync = "sync"
	// durabilityAsync is the old name of DurabilityBatch, still accepted
	// in files.
	durabilityAsync = "async"
)

// defaults returns a File holding every default that a key left out of
// a file keeps. Decoding into it overwrites only the keys present, so an
// explicit zero (sample_allowed: 0) stays zero.
func defaults() *File {
	return &File{
		QuotaManager: QuotaManager{
			UnknownSubjects: "default",
			UnknownActions:  UnknownActions{Policy: "deny"},
			Window:          "fixed",
			Timezone:        "UTC",
			Alerts:          Alerts{ThresholdPercentage: 90},
			Cache:           Cache{Subjects: 100_000},
		},
		Identity: Identity{
			JWT: JWTSource{
				Filter:       "envoy.filters.http.jwt_authn",
				PayloadKey:   "jwt_payload",
				SubjectClaim: "sub",
				TierClaim:    "tier",
				RolesClaim:   "roles",
				TeamClaim:    "team",
			},
			Header:       HeaderSource{Name: "x-user-id"},
			APIKey:       APIKeySource{Header: "x-api-key"},
			StripHeaders: []string{"x-quota-tier", "x-tier", "x-user-tier"},
		},
		Routes:  Routes{Default: RouteDefaultCall},
		Pricing: Pricing{PartialBodyWordsPerByte: 0.5, MaxBodyBytes: 64 << 20},
		Server: Server{
			GRPCAddr:             ":9191",
			HTTPAddr:             ":8080",
			MaxConcurrentStreams: 1024,
			Keepalive: Keepalive{
				Time:    Duration(30 * time.Second),
				Timeout: Duration(10 * time.Second),
				MinTime: Duration(5 * time.Second),
			},
			GracePeriod:               Duration(10 * time.Second),
			InsufficientBalanceStatus: 402,
			MaxReceiveBytes:           8 << 20,
			AccessLog: AccessLog{Enabled: true, MaxEntries: 1000, PendingSize: 100_000,
				PendingMaxAge: Duration(15 * time.Minute)},
		},
		Tracing: Tracing{SampleAllowed: 0.01, SampleRejected: 1},
		Store: StoreConfig{
			FlushInterval: Duration(100 * time.Millisecond),
			Durability:    DurabilityBatch,
		},
	}
}

// derive fills defaults that depend on other fields.
func (f *File) derive() {
	if f.Store.Durability == durabilityAsync {
		f.Store.Durability = DurabilityBatch
	}
	if f.Identity.Sources == nil {
		f.Identity.Sources = []string{SourceJWT, SourceMTLS}
		if f.Identity.Header.Trusted {
			f.Identity.Sources = append(f.Identity.Sources, SourceHeader)
		}
		f.Identity.Sources = append(f.Identity.Sources, SourceAPIKey)
	}
}
