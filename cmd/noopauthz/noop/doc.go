// Package noop is an envoy.service.auth.v3.Authorization server that
// answers every Check with OK and does nothing else.
//
// It is the baseline of the end-to-end load benchmark: the CPU that grpc-go
// itself spends per Check on this machine, with the transport options
// quotagate serves with (extauthz.TransportOptions: keepalive, concurrent
// streams, receive limit, stream workers), so that quotagate's CPU per
// Check can be read as a ratio of it. It lives in its own package so that
// cmd/noopauthz wires it and cmd/loadgen's smoke test can start it in
// process.
package noop
