package main

import (
	"log/slog"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
)

// authzOptions is the ext_authz server's fixed wiring: the logger, and the
// observer that records every decision. A reload never rebuilds it.
func authzOptions(logger *slog.Logger, obs *observer) extauthz.Options {
	return extauthz.Options{Logger: logger, Observe: obs.observe}
}

// authzPolicy maps the configuration onto the ext_authz policy: identity,
// routes, pricing of bodies and the answers' settings. A reload builds a
// new one and swaps it in whole.
func authzPolicy(file *config.File) (extauthz.Policy, error) {
	id := file.Identity
	sources := make([]extauthz.Source, 0, len(id.Sources))
	for _, s := range id.Sources {
		src, err := extauthz.ParseSource(s)
		if err != nil {
			return extauthz.Policy{}, err
		}
		sources = append(sources, src)
	}
	routes := make([]extauthz.Route, len(file.Routes.Rules))
	for i, r := range file.Routes.Rules {
		routes[i] = extauthz.Route{PathPrefix: r.PathPrefix, Method: r.Method, Action: r.Action, Workflow: r.Workflow}
	}
	unrouted, err := extauthz.ParseUnrouted(file.Routes.Default)
	if err != nil {
		return extauthz.Policy{}, err
	}
	upgrade := make(map[engine.Tier]string, len(file.QuotaManager.Tiers))
	for name, t := range file.QuotaManager.Tiers {
		upgrade[engine.Tier(name)] = t.UpgradeURL
	}
	return extauthz.Policy{
		Identity: extauthz.IdentityOptions{
			Sources:   sources,
			JWTFilter: id.JWT.Filter, JWTPayloadKey: id.JWT.PayloadKey,
			SubjectClaim: id.JWT.SubjectClaim, TierClaim: id.JWT.TierClaim, RolesClaim: id.JWT.RolesClaim, TeamClaim: id.JWT.TeamClaim,
			Header: id.Header.Name, HeaderTrusted: id.Header.Trusted,
			APIKeyHeader: id.APIKey.Header, APIKeys: file.APIKeys(),
		},
		Routes:                    routes,
		Unrouted:                  unrouted,
		StripHeaders:              id.StripHeaders,
		InsufficientBalanceStatus: file.Server.InsufficientBalanceStatus,
		WordsPerByte:              file.Pricing.PartialBodyWordsPerByte,
		MaxBodyBytes:              file.Pricing.MaxBodyBytes,
		UpgradeURL:                func(t engine.Tier) string { return upgrade[t] },
	}, nil
}
