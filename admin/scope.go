package admin

import (
	"fmt"
	"strings"
)

// Scope is what a token may do. Scopes are ordered: a token with a scope
// may do everything a lower scope may. The zero value, ScopeNone, allows
// nothing.
type Scope int

const (
	// ScopeNone is no scope: a token without one is refused.
	ScopeNone Scope = iota
	// ScopeRead reads subjects, teams, tiers, capacity, alerts and usage,
	// and opens the dashboard.
	ScopeRead
	// ScopeWrite also changes profiles and credits and acknowledges alerts.
	ScopeWrite
	// ScopeAdmin also changes the capacity and the capacity factor.
	ScopeAdmin
)

var scopeNames = [...]string{"none", "read", "write", "admin"}

// String returns "read", "write", "admin" or "none".
func (s Scope) String() string {
	if s < 0 || int(s) >= len(scopeNames) {
		return fmt.Sprintf("Scope(%d)", int(s))
	}
	return scopeNames[s]
}

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	for i, n := range scopeNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Scope(i), nil
		}
	}
	return ScopeNone, fmt.Errorf("admin: unknown scope %q: want read, write or admin", s)
}

// MarshalText writes the scope's name.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a scope name.
func (s *Scope) UnmarshalText(b []byte) error {
	v, err := ParseScope(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
