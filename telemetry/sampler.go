package telemetry

import (
	"strconv"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Default sampling ratios, the ones config's tracing block defaults to.
const (
	DefaultSampleAllowed  = 0.01
	DefaultSampleRejected = 1.0
)

// NewSampler returns the decision-aware, parent-based sampler described in
// the package documentation. sampleAllowed and sampleRejected are
// probabilities in [0, 1]; values outside are clamped. It reads the
// quota.decision attribute given when the span starts: a span without it
// counts as an allow. The sampler is safe for concurrent use.
func NewSampler(sampleAllowed, sampleRejected float64) sdktrace.Sampler {
	return decisionSampler{
		allowed:  sdktrace.TraceIDRatioBased(clamp01(sampleAllowed)),
		rejected: sdktrace.TraceIDRatioBased(clamp01(sampleRejected)),
		desc: "QuotaDecisionSampler{allowed:" + strconv.FormatFloat(clamp01(sampleAllowed), 'g', -1, 64) +
			",rejected:" + strconv.FormatFloat(clamp01(sampleRejected), 'g', -1, 64) + "}",
	}
}

type decisionSampler struct {
	allowed, rejected sdktrace.Sampler
	desc              string
}

// ShouldSample implements sdktrace.Sampler.
func (s decisionSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	if p.ParentContext != nil && p.ParentContext.Value(presampledKey{}) != nil {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: psc.TraceState()}
	}
	rejected := isRejection(p)
	if psc.IsValid() {
		if psc.IsSampled() {
			return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: psc.TraceState()}
		}
		if !rejected {
			return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: psc.TraceState()}
		}
		return s.rejected.ShouldSample(p)
	}
	if rejected {
		return s.rejected.ShouldSample(p)
	}
	return s.allowed.ShouldSample(p)
}

// presampledKey marks a context whose span the Recorder already decided
// to keep: Record draws the SampleAllowed lottery for a root allow itself,
// so that the 99% it drops do not even start a span.
type presampledKey struct{}

// Description implements sdktrace.Sampler.
func (s decisionSampler) Description() string { return s.desc }

// isRejection reports whether the span being started records a deny or an
// error decision.
func isRejection(p sdktrace.SamplingParameters) bool {
	for _, kv := range p.Attributes {
		if kv.Key == keyDecision {
			v := kv.Value.AsString()
			return v == string(OutcomeDeny) || v == string(OutcomeError)
		}
	}
	return false
}

func clamp01(f float64) float64 {
	switch {
	case f != f || f < 0: // NaN or negative
		return 0
	case f > 1:
		return 1
	}
	return f
}
