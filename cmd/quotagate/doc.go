// Command quotagate is an Envoy external-authorization service that enforces
// tiered, cost-based usage quotas. See `quotagate --help`.
package main
