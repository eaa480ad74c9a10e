// Package telemetry builds quotagate's OpenTelemetry tracer and meter
// providers from the standard OTEL_* environment variables, and records one
// decision span, the decision metrics and the rejection log line per Check.
//
// It knows nothing of the engine or of Envoy: callers translate their
// decision into a Decision, a plain struct, and hand engine statistics over
// through callbacks (RecorderOptions.EngineStats, RecorderOptions.TierStats),
// so that this package only imports OpenTelemetry and Prometheus libraries.
//
// # Sampling
//
// The quota.check span is started after the decision is made, with the
// request's start time, so that the sampler sees the quota.decision
// attribute. The sampler (NewSampler) is parent-based and decision-aware:
//
//   - a remote parent that was sampled (Envoy's trace is kept) keeps the
//     span, whatever the decision;
//   - a remote parent that was not sampled keeps a rejection (deny or error)
//     with probability SampleRejected, 1.0 by default, and drops an allow: a
//     rejection is recorded even when Envoy decided not to trace the
//     request; the span then carries Envoy's trace id and parent span id,
//     but Envoy's own spans for that trace are missing in the backend;
//   - with no parent at all, a rejection is kept with probability
//     SampleRejected and an allow with probability SampleAllowed (0.01 by
//     default). The Recorder draws the allow's lottery itself before it
//     starts a span, so that the allows it drops cost no span at all.
//
// # Prometheus endpoint and exporters
//
// The registry MetricsHandler serves holds the OpenTelemetry instruments
// (without the otel_scope_* labels), the Go runtime and process collectors
// under their standard names, and, once NewGRPCMetrics is called, the gRPC
// server metrics (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds). Exporters lists the OTLP exporters in use,
// with a warning when an endpoint's port is the other protocol's well-known
// one; ErrorHandler turns the SDK's errors into rate-limited JSON log lines.
//
// # Cardinality
//
// Metric attributes are tier, decision, reason, action (and limit names for
// the per-tier gauges), all of which come from the configuration. A guard
// caps the number of distinct attribute sets; past it, actions are
// reported as "other". The subject never appears in a metric; in a span it
// appears as its SHA-256 (quota.subject_hash) unless RawSubject is set.
package telemetry
