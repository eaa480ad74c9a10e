// Package extauthz is quotagate's Envoy external-authorization front end.
//
// It turns what a proxy knows about a request (method, path, headers, body,
// route context_extensions, jwt_authn metadata, mTLS principal) into an
// engine.Request, asks the engine to decide and charge, and turns the
// engine.Decision back into an answer the proxy understands: an allow with
// headers for the client and the upstream, or a denial with a status code,
// headers and a JSON body.
//
// The core is protocol-neutral: Server.Decide takes an Input and returns a
// Verdict. Two thin adapters sit on top of it: the gRPC
// envoy.service.auth.v3.Authorization service (Server.Check) and the HTTP
// authorization mode (Server.HTTPHandler) that speaks Envoy's http_service
// protocol and the forward-auth convention of Caddy, Traefik and nginx. Both
// give the same decisions, headers and bodies because both call Decide.
//
// # Options and Policy
//
// NewServer takes two things. Options is the wiring, fixed for the Server's
// life: the logger, the clock and the Observe hook that sees every
// decision. Policy is what a configuration reload may change: identity,
// routes, body pricing and the answers' settings. SetPolicy swaps the policy
// whole and leaves the wiring alone, so a reload cannot drop the hook. Each
// request loads the policy once and is decoded (for gRPC) and decided under
// it, so a reload in the middle of a Check never mixes two policies.
//
// # Identity
//
// The caller is identified from sources tried in a configured order: the
// jwt_authn payload in the request's metadata, the mTLS principal, a header
// that the proxy sets after authentication (only when configured as
// trusted), and an API key looked up by its SHA-256 hash. A tier is only ever
// taken from a verified JWT claim, never from a client header. A request with
// no identity is denied with 401 and a body listing the sources tried.
//
// # Routes
//
// When a request's context_extensions name no action or workflow, the
// configured Routes are tried in order on the request path as Envoy
// normalizes it with normalize_path, merge_slashes and escaped slashes
// unescaped (package pathnorm): no query, dot segments removed, slashes
// merged, unreserved characters decoded. Prefixes match case-sensitively, as
// in Envoy. A request that no route matches follows Policy.Unrouted: it is
// a plain call, or it is refused with 403 no_route. An action without a
// price is the engine's to judge (engine.ReasonUnknownAction: 403
// unknown_action with a neutral message); the Server logs each such action
// name once, for the operator.
//
// # Settlement
//
// AccessLogService serves Envoy's gRPC access log service
// (envoy.service.accesslog.v3, HTTP entries) and settles each entry's
// decision through the engine (engine.Engine.Settle): the decision id comes
// from the ext_authz dynamic metadata Check set (ExtAuthzFilter), or from a
// logged x-quota-decision-id request header. Batches are decoded without
// building the message tree (accesslogskim.go). An entry that names no
// decision, or one the engine does not hold, changes nothing and is
// counted; an error from Settle (checked before its outcome) is counted and
// logged, as Envoy does not resend. Check keeps the request's traceparent
// in engine.Request.Trace, so that a settlement is traced on the
// decision's trace.
//
// # Transport
//
// The gRPC server decodes CheckRequests with a codec that accepts strings
// that are not valid UTF-8: the body moves byte for byte to raw_body, other
// strings get U+FFFD, and the Check is decided like any other. It decodes
// only the AttributeContext fields the server reads (source, request,
// context_extensions, and metadata_context when the jwt identity source is
// on; not destination, tls_session or route_metadata_context), and the
// header and context-extension maps without protobuf's reflection: a third
// of a Check's CPU went to decoding. A message
// over GRPCOptions.MaxReceiveBytes is refused by grpc-go before it is read;
// a stats handler logs and reports every RPC that ended without a decision.
//
// # Units
//
// Units are words counted in the request body (see CountWords). When the
// proxy truncated the body (Envoy's allow_partial_message), the words in the
// part received are counted exactly and the rest of the body, whose size is
// known from content-length, is priced at WordsPerByte words per byte. The
// default, 0.5, is the highest density CountWords can produce (a one-byte
// word and a one-byte separator), so the charge is an upper bound: a
// truncated body is never under-charged (TestPartialBodyDefaultCoversMeasuredText
// measures text in many languages against it). A truncated body without a
// content-length cannot be bounded and is refused with 411; a body larger
// than MaxBodyBytes, claimed or received, is refused with 413
// request_too_large before anything is charged, so no claimed size can
// inflate a price. A caller without identity is refused with 401 first.
//
// # Refusals
//
// The quota refusals share one shape: 429 (a window), 402 (the balance)
// and 413 (a request that can never fit) carry RateLimit fields for what
// refused them, Retry-After and retry_after_seconds exactly when waiting
// helps, and a detail saying why and until when.
package extauthz
