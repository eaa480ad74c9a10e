package extauthz

import (
	"github.com/quotagate/quotagate/engine"
)

// Input is what a proxy tells quotagate about one request, in a form that
// both Envoy's gRPC CheckRequest and the HTTP authorization mode can supply.
// The zero value of each field means "not given".
type Input struct {
	// Method, Path, Host and Scheme describe the original request. Path may
	// carry a query string; it is ignored for route matching.
	Method, Path, Host, Scheme string
	// Headers are the original request headers, keys in lower case.
	Headers map[string]string
	// Body is the request body as the proxy forwarded it, possibly cut short.
	Body string
	// BodyTruncated reports that the proxy cut the body (Envoy sets the
	// x-envoy-auth-partial-body header).
	BodyTruncated bool
	// ContentLength is the full body size from content-length; -1 means
	// unknown.
	ContentLength int64
	// ContextExtensions are the route's ext_authz context_extensions
	// ("action", "workflow").
	ContextExtensions map[string]string
	// JWT holds the claims of the verified JWT payload that jwt_authn wrote
	// into the request's metadata (under the configured filter and key),
	// read with the configured claim names; zero when absent.
	JWT Claims
	// Principal is the mTLS peer principal (SPIFFE id or certificate
	// subject) as authenticated by the proxy; empty without mTLS.
	Principal string
	// SourceAddress and SourcePort are the downstream peer's IP address and
	// port.
	SourceAddress string
	SourcePort    uint32
	// RequestID is the proxy's x-request-id, for logs.
	RequestID string
}

// Claims are the identity claims of a verified JWT. An empty Subject means
// no usable JWT.
type Claims struct {
	Subject, Tier, Team string
	Roles               []string
}

// Header is one HTTP header to add or set.
type Header struct {
	Key, Value string
}

// Verdict is the protocol-neutral answer to an Input.
type Verdict struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Status is the HTTP status: 200 when allowed, otherwise the denial's
	// code (429, 402, 403, 401, 411, 413 or 503).
	Status int
	// Code names the outcome for clients and logs: "ok" when allowed, or the
	// JSON body's error ("quota_exceeded", "insufficient_balance",
	// "feature_not_in_plan", "overloaded", "unauthenticated",
	// "unknown_subject", "length_required", "request_too_large",
	// "unknown_action", "no_route",
	// "unavailable").
	Code string
	// Headers go to the client: response headers on an allow, the denial's
	// headers otherwise.
	Headers []Header
	// UpstreamHeaders are set on the request sent upstream (allow only).
	UpstreamHeaders []Header
	// RemoveHeaders are removed from the request sent upstream (allow only):
	// the configured identity spoofing vectors that the request carried.
	RemoveHeaders []string
	// Body is the denial's JSON body; nil when allowed.
	Body []byte
	// Metadata is the dynamic metadata for the proxy's access logs.
	Metadata Metadata
	// Decision is the engine's decision. When Err is set it is what the
	// engine returned with the error (the tier and failure mode).
	Decision engine.Decision
	// Identity names the source that identified the caller ("jwt", "mtls",
	// "header", "api_key"), empty when none did.
	Identity Source
	// Err is why no decision could be made, if so; FailureModeApplied is then
	// "open" or "closed".
	Err                error
	FailureModeApplied string
}

// Metadata describes the decision for logs. Check sends it as the dynamic
// metadata of every answer (all but Units; empty strings are left out), so
// that an Envoy access log can print it as
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%.
type Metadata struct {
	DecisionID  string
	Decision    string // "allow" or "deny"
	Reason      string // engine.Reason name, or "error"
	Tier        string
	Action      string
	Workflow    string
	Cost        int64
	Units       int64
	FailureMode string // "open" or "closed" when applied, else empty
}
