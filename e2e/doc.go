// Package e2e holds black-box tests of the quotagate binary. TestMain
// builds it once; each test starts it as a process on free loopback ports
// with its own configuration and talks to it over the network with real
// clients: gRPC CheckRequests shaped exactly as Envoy's ext_authz filter
// sends them, the gRPC health service, HTTP, signals and the CLI.
package e2e
