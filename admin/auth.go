package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
)

// principal is who made a request: the token's name, scope and team.
type principal struct {
	name  string
	scope Scope
	team  string // empty: unrestricted
}

// mayTouchTeam reports whether p may act on team (a team name, or "" for
// a subject in no team).
func (p principal) mayTouchTeam(team string) bool {
	return p.team == "" || p.team == team
}

// token is a configured token, its hash decoded.
type token struct {
	hash [sha256.Size]byte
	p    principal
}

// tokenSet authenticates bearer tokens against configured hashes.
type tokenSet struct {
	tokens []token
}

func newTokenSet(cfgs []TokenConfig) tokenSet {
	ts := tokenSet{tokens: make([]token, 0, len(cfgs))}
	for _, c := range cfgs {
		var t token
		// Validate has checked the hash; a bad one never matches.
		if b, err := hex.DecodeString(c.SHA256); err == nil && len(b) == sha256.Size {
			copy(t.hash[:], b)
		}
		t.p = principal{name: c.Name, scope: maxScope(c.Scopes), team: c.Team}
		ts.tokens = append(ts.tokens, t)
	}
	return ts
}

// lookup returns the principal of the token whose hash matches secret. It
// compares against every configured hash in constant time, so that the
// time taken says nothing about which hash, or how much of one, matched.
func (ts tokenSet) lookup(secret string) (principal, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range ts.tokens {
		if subtle.ConstantTimeCompare(sum[:], ts.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return principal{}, false
	}
	return ts.tokens[found].p, true
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// clientKey returns the key that auth failures are counted under: the
// remote IP, or its /64 for IPv6, where one client often holds a whole
// prefix.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// remoteIsLoopback reports whether r came from a loopback address.
func remoteIsLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
