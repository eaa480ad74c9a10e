package extauthz

import "fmt"

// Unrouted says what a request gets when its context_extensions name no
// action or workflow and no Route matches its normalized path. The zero
// value is UnroutedCall.
type Unrouted int

const (
	// UnroutedCall prices the request as a plain API call: it counts
	// against the caller's call limits and costs no tokens.
	UnroutedCall Unrouted = iota
	// UnroutedDeny refuses the request with 403 no_route and charges
	// nothing.
	UnroutedDeny
)

// String returns "call" or "deny", as routes.default spells them.
func (u Unrouted) String() string {
	switch u {
	case UnroutedCall:
		return "call"
	case UnroutedDeny:
		return "deny"
	}
	return fmt.Sprintf("Unrouted(%d)", int(u))
}

// ParseUnrouted parses "call" or "deny".
func ParseUnrouted(s string) (Unrouted, error) {
	switch s {
	case "call":
		return UnroutedCall, nil
	case "deny":
		return UnroutedDeny, nil
	}
	return 0, fmt.Errorf("unknown routes.default %q: want call or deny", s)
}
