// Package envoy holds quotagate's Envoy integration kit: example
// configurations that ops can copy (front-proxy.yaml, sidecar.yaml and the
// Istio snippets under istio/), Validate, which checks a bootstrap against
// Envoy's own schema (go-control-plane's protos and their validation
// rules, typed extensions included), and Generate, which prints the
// ext_authz filter, the quotagate cluster, the per-route settings for a
// quota configuration, and the access logger through which Envoy reports
// each response to quotagate so that it settles the charge (Settlement).
//
// See README.md in this directory for how to wire quotagate into Envoy,
// Istio, Caddy, Traefik and nginx.
package envoy
