package main

import (
	"slices"
	"strings"

	"github.com/quotagate/quotagate/envoy"
)

// envoyInputs is what envoy-config takes from a quota configuration.
type envoyInputs struct {
	// Routes are the routes to price.
	Routes []envoy.Route
	// UsageHeaders are the response headers the actions' settle rules
	// read actual usage from (usage_header), sorted and without repeats;
	// the access logger must log them or no adjustment can happen.
	UsageHeaders []string
}

// envoyRoutes returns the loader envoy-config uses: the configured routes,
// then one route per action and workflow that no route names, so every
// priced action gets its context_extensions, and the usage headers of the
// actions' settle rules. An empty path loads the embedded default
// configuration.
func envoyRoutes(getenv func(string) string) func(path string) (envoyInputs, error) {
	return func(path string) (envoyInputs, error) {
		file, _, err := loadConfig(path, getenv)
		if err != nil {
			return envoyInputs{}, err
		}
		var routes []envoy.Route
		actions, workflows := map[string]bool{}, map[string]bool{}
		for _, r := range file.Routes.Rules {
			routes = append(routes, envoy.Route{Prefix: r.PathPrefix, Method: r.Method, Action: r.Action, Workflow: r.Workflow})
			actions[r.Action], workflows[r.Workflow] = true, true
		}
		for _, a := range sortedKeys(file.QuotaManager.Actions) {
			if !actions[a] {
				routes = append(routes, envoy.Route{Action: a})
			}
		}
		for _, w := range sortedKeys(file.QuotaManager.Workflows) {
			if !workflows[w] {
				routes = append(routes, envoy.Route{Workflow: w})
			}
		}
		var usage []string
		for _, a := range file.QuotaManager.Actions {
			if s := a.Settle; s != nil && !s.Off && s.UsageHeader != "" {
				usage = append(usage, strings.ToLower(s.UsageHeader))
			}
		}
		slices.Sort(usage)
		return envoyInputs{Routes: routes, UsageHeaders: slices.Compact(usage)}, nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
