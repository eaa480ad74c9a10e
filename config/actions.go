package config

import (
	"slices"

	"github.com/quotagate/quotagate/engine"
)

// convertUnknownActions converts quota_manager.unknown_actions, recording a
// problem for a policy that does not parse or a price_as that names no
// priced action.
func convertUnknownActions(qm *QuotaManager, p *problems) engine.UnknownActions {
	const path = "quota_manager.unknown_actions"
	ua := qm.UnknownActions
	mode, err := engine.ParseUnknownActionMode(ua.Policy)
	if err != nil {
		p.addf(path+".policy", "must be deny (refuse with 403 unknown_action) or price (price as price_as), got %q", ua.Policy)
		return engine.UnknownActions{}
	}
	switch {
	case mode == engine.UnknownActionPrice && !has(qm.Actions, ua.PriceAs):
		p.addf(path+".price_as", "must name an action under quota_manager.actions when the policy is price, got %q%s", ua.PriceAs, oneOf(ua.PriceAs, sortedKeys(qm.Actions)))
		return engine.UnknownActions{}
	case mode == engine.UnknownActionDeny && ua.PriceAs != "":
		p.addf(path+".price_as", "is %q but the policy is deny; remove it, or set policy: price", ua.PriceAs)
		return engine.UnknownActions{}
	}
	return engine.UnknownActions{Mode: mode, PriceAs: ua.PriceAs}
}

// ActionUse is one action the routes table names, with what a request
// for it gets.
type ActionUse struct {
	// Action is the name, as the route gives it.
	Action string
	// Routes are the indexes of the routes that name it.
	Routes []int
	// Priced is true when quota_manager.actions prices it; Feature when a
	// tier or role lists it in features (so it is known, and free).
	Priced, Feature bool
}

// RouteActions lists the actions that routes name, in name order, with
// whether each is priced: `config validate` shows them, so that a typo
// (which would be refused at run time, or priced as unknown_actions.price_as)
// is seen before it is served.
func (f *File) RouteActions() []ActionUse {
	byName := map[string]*ActionUse{}
	for i, r := range f.Routes.Rules {
		if r.Action == "" {
			continue
		}
		u := byName[r.Action]
		if u == nil {
			u = &ActionUse{Action: r.Action}
			byName[r.Action] = u
		}
		u.Routes = append(u.Routes, i)
	}
	qm := &f.QuotaManager
	out := make([]ActionUse, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		u := byName[name]
		u.Priced = has(qm.Actions, name)
		for _, t := range qm.Tiers {
			u.Feature = u.Feature || slices.Contains(t.Features, name)
		}
		for _, r := range qm.Roles {
			u.Feature = u.Feature || slices.Contains(r.Features, name)
		}
		out = append(out, *u)
	}
	return out
}
