package engine

import (
	"fmt"
	"strings"
)

// UnknownActionMode says what a request gets whose Action the Rules do
// not know: it has no entry in Rules.Actions and no tier or role lists it
// among its features. That is a typo in a route's context_extensions, or a
// name a client chose. The zero value is UnknownActionDeny.
type UnknownActionMode int

const (
	// UnknownActionDeny refuses the request with ReasonUnknownAction and
	// charges nothing, so that a misspelt action is never served for free.
	UnknownActionDeny UnknownActionMode = iota
	// UnknownActionPrice prices and limits the request as the action named
	// by UnknownActions.PriceAs.
	UnknownActionPrice
)

// String returns "deny" or "price".
func (m UnknownActionMode) String() string {
	switch m {
	case UnknownActionDeny:
		return "deny"
	case UnknownActionPrice:
		return "price"
	}
	return fmt.Sprintf("UnknownActionMode(%d)", int(m))
}

// ParseUnknownActionMode parses "deny" or "price".
func ParseUnknownActionMode(s string) (UnknownActionMode, error) {
	switch strings.ToLower(s) {
	case "deny":
		return UnknownActionDeny, nil
	case "price":
		return UnknownActionPrice, nil
	}
	return 0, fmt.Errorf("unknown policy %q for unknown actions: want deny or price", s)
}

// UnknownActions is the policy for requests whose Action has no price. The
// zero value refuses them.
type UnknownActions struct {
	Mode UnknownActionMode
	// PriceAs names the action, which must be in Rules.Actions, whose
	// price and per-action limits apply under UnknownActionPrice.
	PriceAs string
}

// defaultUnknownAction is the client's text for ReasonUnknownAction: it
// names neither the action nor the configuration, which are the operator's
// business (the operator is told through logs and metrics).
const defaultUnknownAction = "This request is not available. If it should be, contact support and quote the decision id."

// maxUnknownActionLen bounds the unknown action name a Decision carries,
// since a client may choose it.
const maxUnknownActionLen = 128

// screenAction applies the unknown-action policy to req before it is
// priced: it returns the name of an action that has no price ("" if req's
// action has one or none is set), and under UnknownActionPrice rewrites
// req.Action to the action that prices it.
func (rs *ruleset) screenAction(req *Request) (unknown string) {
	if req.Action == "" {
		return ""
	}
	if name, ok := rs.declared[req.Action]; ok {
		req.Action = name // the ruleset's copy, shared by what outlives the request
		return ""
	}
	unknown = req.Action
	if len(unknown) > maxUnknownActionLen {
		unknown = unknown[:maxUnknownActionLen]
	}
	if rs.rules.UnknownActions.Mode == UnknownActionPrice {
		req.Action = rs.rules.UnknownActions.PriceAs
	}
	return unknown
}

// declaredActions is the set of actions c knows: those priced in Actions
// and those a tier or role lists among its features (free, but deliberate).
// Any other action is unknown. Each maps to itself: the copy of its name
// that requests use (screenAction).
func declaredActions(c *Rules) map[string]string {
	set := make(map[string]string, len(c.Actions))
	for a := range c.Actions {
		set[a] = a
	}
	for _, tc := range c.Tiers {
		for _, f := range tc.Features {
			set[f] = f
		}
	}
	for _, rc := range c.Roles {
		for _, f := range rc.Features {
			set[f] = f
		}
	}
	return set
}

// validateUnknownActions checks that a price policy names a priced action.
func validateUnknownActions(v *validator, c *Rules) {
	ua := c.UnknownActions
	switch ua.Mode {
	case UnknownActionDeny:
		if ua.PriceAs != "" {
			v.add("unknown_actions.price_as", "is %q but the policy is deny; remove it or set the policy to price", ua.PriceAs)
		}
	case UnknownActionPrice:
		if _, ok := c.Actions[ua.PriceAs]; !ok {
			v.add("unknown_actions.price_as", "unknown action %q: the policy price needs an action defined under actions", ua.PriceAs)
		}
	default:
		v.add("unknown_actions.policy", "unknown policy %v: want deny or price", ua.Mode)
	}
}
