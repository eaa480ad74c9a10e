package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/quotagate/quotagate/engine"
)

// Source names an identity source.
type Source string

// The identity sources, in the order they are tried by default.
const (
	SourceJWT    Source = "jwt"
	SourceMTLS   Source = "mtls"
	SourceHeader Source = "header"
	SourceAPIKey Source = "api_key"
)

// ParseSource parses an identity source name.
func ParseSource(s string) (Source, error) {
	switch src := Source(strings.ToLower(s)); src {
	case SourceJWT, SourceMTLS, SourceHeader, SourceAPIKey:
		return src, nil
	}
	return "", fmt.Errorf("extauthz: unknown identity source %q: want jwt, mtls, header or api_key", s)
}

// IdentityOptions configures how callers are identified. The zero value
// tries no source, so every request is denied with 401.
type IdentityOptions struct {
	// Sources are tried in order; the first that yields a subject wins.
	Sources []Source
	// JWTFilter and JWTPayloadKey locate the verified payload that
	// jwt_authn writes into metadata (payload_in_metadata). Empty means
	// "envoy.filters.http.jwt_authn" and "jwt_payload".
	JWTFilter, JWTPayloadKey string
	// SubjectClaim names the subject claim; empty means "sub".
	SubjectClaim string
	// TierClaim, RolesClaim and TeamClaim name the claims that assert the
	// caller's tier, roles and team; empty means the claim is not used.
	TierClaim, RolesClaim, TeamClaim string
	// Header is the header the proxy sets after authentication; it is only
	// used when HeaderTrusted. Empty means "x-user-id".
	Header        string
	HeaderTrusted bool
	// APIKeyHeader carries an API key. Empty means "x-api-key".
	APIKeyHeader string
	// APIKeys maps the lower-case hex SHA-256 of a key to its subject.
	APIKeys map[string]string
}

func (o *IdentityOptions) withDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.JWTFilter, "envoy.filters.http.jwt_authn")
	def(&o.JWTPayloadKey, "jwt_payload")
	def(&o.SubjectClaim, "sub")
	def(&o.Header, "x-user-id")
	def(&o.APIKeyHeader, "x-api-key")
	o.Header = strings.ToLower(o.Header)
	o.APIKeyHeader = strings.ToLower(o.APIKeyHeader)
}

// identify fills req's Subject (and Tier, Roles, Team from a JWT) from the
// first configured source that yields one, and returns that source. It
// returns "" when no source did.
func (o *IdentityOptions) identify(in *Input, req *engine.Request) Source {
	for _, src := range o.Sources {
		switch src {
		case SourceJWT:
			if o.fromJWT(&in.JWT, req) {
				return src
			}
		case SourceMTLS:
			if in.Principal != "" {
				req.Subject = in.Principal
				return src
			}
		case SourceHeader:
			if v := in.Headers[o.Header]; o.HeaderTrusted && v != "" {
				req.Subject = v
				return src
			}
		case SourceAPIKey:
			if subject := o.fromAPIKey(in.Headers[o.APIKeyHeader]); subject != "" {
				req.Subject = subject
				return src
			}
		}
	}
	return ""
}

// fromJWT takes the subject, tier, roles and team of a verified payload.
// The tier claim is trusted because jwt_authn verified the token.
func (o *IdentityOptions) fromJWT(c *Claims, req *engine.Request) bool {
	if c.Subject == "" {
		return false
	}
	req.Subject, req.Tier, req.Team, req.Roles = c.Subject, engine.Tier(c.Tier), c.Team, c.Roles
	return true
}

// fromAPIKey returns the subject whose key hashes to the key's SHA-256, or ""
// for a missing or unknown key.
func (o *IdentityOptions) fromAPIKey(key string) string {
	if key == "" || len(o.APIKeys) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	var buf [2 * sha256.Size]byte
	hex.Encode(buf[:], sum[:])
	return o.APIKeys[string(buf[:])]
}

// sourceNames lists the configured sources for a 401 body.
func (o *IdentityOptions) sourceNames() []string {
	names := make([]string, len(o.Sources))
	for i, s := range o.Sources {
		names[i] = string(s)
	}
	return names
}
