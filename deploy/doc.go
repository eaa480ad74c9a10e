// Package deploy holds the tests of quotagate's deployment files: the
// container image (Containerfile, build-image.sh), the Kubernetes
// manifests (a Kustomize base and the sqlite and redis overlays), the
// Istio and Envoy Gateway objects, and the SRE kit (Prometheus alert
// rules and a Grafana dashboard).
//
// It is a Go module of its own, so that the Kubernetes, kustomize, Istio,
// Envoy Gateway and Prometheus modules its tests decode with never reach
// the server's go.mod. Its tests build and run the real server: the
// image's entrypoint answers a Check, the ConfigMaps' configurations pass
// `quotagate config validate`, and every metric the rules and the
// dashboard name is scraped from a running server's /metrics.
package deploy
