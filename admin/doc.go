// Package admin is quotagate's management HTTP API and live dashboard.
//
// The API is JSON over HTTP, on its own listener (--admin-addr), apart from
// the authorization ports, and off unless configured. It reads and changes
// subjects (usage, limits, balance; tier, roles and overrides), teams and
// their shared balance, credits, tiers, the capacity and capacity factor,
// alerts and usage reports, and reports the configuration's reloads
// (GET /v1/config). Its OpenAPI 3 document is served at
// /openapi.json. Every change made through it is recorded in the ledger as
// an admin record: who (the token's name), what, before and after.
//
// # Access control
//
// Requests carry a bearer token. Tokens have a scope, read < write < admin,
// and may be restricted to one team: such a token may only touch that team
// and its members. Only the SHA-256 of each token is configured (see
// HashToken), and a presented token is compared against every hash in
// constant time. TLS with optional client certificates (mTLS) comes on
// top. There is no default token: with none configured, the server refuses
// to start unless it is bound to loopback, and then it serves local clients
// only. Failed authentications are counted per presented token (its
// SHA-256) and, with a much higher ceiling, per client address; either
// answers failing requests with 429 until its window ends, but a valid
// token is checked first and never refused by them. Tokens are never
// logged or put in errors.
//
// # Changes
//
// A change is validated by the engine's own rules (engine.ValidateProfile,
// engine.PreviewCredits), then recorded in the ledger, then made: a change
// that is refused, or that the ledger cannot record, changes nothing. A
// subject must exist (configured, or with state) for PATCH and credits;
// PUT creates it, and GET of one never seen shows its starting state
// unless unknown_subjects is deny, creating nothing. Subject ids, bodies
// (64 KiB), periods, list sizes and credits have bounds, and a refusal
// names the field and how to fix it.
//
// # Dashboard
//
// The dashboard is a page served from embedded assets at /dashboard/. The
// page itself holds no data: it asks for a read token on a login form,
// keeps it in the tab's sessionStorage and sends it as a bearer header,
// also on the Server-Sent Events stream (read with fetch, since
// EventSource cannot set headers). It shows the tiers and their limits,
// decisions per second by tier and outcome, the subjects closest to their
// limits, recent rejections linked to their traces, and the alert feed,
// under a banner while the server is degraded (Options.Degraded) or its
// last configuration reload was refused.
//
// Decisions reach the dashboard through Observe, which the ext_authz
// server calls once per Check. Observe does no I/O and never waits on
// anything but a short mutex: it adds to per-second counters and a ring of
// recent rejections, which the stream reads once per interval.
//
// # Configuration
//
// Config is plain options: the command's wiring builds it from the
// configuration file's admin block. Config.Validate reports
// engine.FieldErrors with paths relative to Config (tokens[0].sha256),
// which the wiring places in the file (admin.tokens[0].sha256). IsLoopback
// is the one test of a loopback-only address that quotagate uses.
package admin
