package main

import (
	"slices"

	"github.com/quotagate/quotagate/envoy"
)

// envoyRoutes returns the loader envoy-config uses: the configured routes,
// then one route per action and workflow that no route names, so every
// priced action gets its context_extensions. An empty path loads the
// embedded default configuration.
func envoyRoutes(getenv func(string) string) func(path string) ([]envoy.Route, error) {
	return func(path string) ([]envoy.Route, error) {
		file, _, err := loadConfig(path, getenv)
		if err != nil {
			return nil, err
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
		return routes, nil
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
