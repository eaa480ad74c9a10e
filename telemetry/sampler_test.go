package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestSampler(t *testing.T) {
	tid, _ := trace.TraceIDFromHex(envoyTraceID)
	sid, _ := trace.SpanIDFromHex(envoySpanID)
	parent := func(sampled bool) context.Context {
		cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}
		if sampled {
			cfg.TraceFlags = trace.FlagsSampled
		}
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(cfg))
	}
	tests := []struct {
		name              string
		allowed, rejected float64
		ctx               context.Context
		decision          string // empty: attribute absent
		want              sdktrace.SamplingDecision
	}{
		{name: "root deny at 1", allowed: 0, rejected: 1, ctx: context.Background(), decision: "deny", want: sdktrace.RecordAndSample},
		{name: "root error at 1", allowed: 0, rejected: 1, ctx: context.Background(), decision: "error", want: sdktrace.RecordAndSample},
		{name: "root allow at 0", allowed: 0, rejected: 1, ctx: context.Background(), decision: "allow", want: sdktrace.Drop},
		{name: "root allow at 1", allowed: 1, rejected: 0, ctx: context.Background(), decision: "allow", want: sdktrace.RecordAndSample},
		{name: "root deny at 0", allowed: 1, rejected: 0, ctx: context.Background(), decision: "deny", want: sdktrace.Drop},
		{name: "no decision attribute counts as allow", allowed: 0, rejected: 1, ctx: context.Background(), want: sdktrace.Drop},
		{name: "sampled parent keeps an allow", allowed: 0, rejected: 0, ctx: parent(true), decision: "allow", want: sdktrace.RecordAndSample},
		{name: "unsampled parent keeps a deny", allowed: 1, rejected: 1, ctx: parent(false), decision: "deny", want: sdktrace.RecordAndSample},
		{name: "unsampled parent drops an allow", allowed: 1, rejected: 1, ctx: parent(false), decision: "allow", want: sdktrace.Drop},
		{name: "allow the Recorder presampled is kept", allowed: 0, rejected: 0, ctx: context.WithValue(context.Background(), presampledKey{}, true), decision: "allow", want: sdktrace.RecordAndSample},
		{name: "out of range ratios are clamped", allowed: -3, rejected: 7, ctx: context.Background(), decision: "deny", want: sdktrace.RecordAndSample},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := sdktrace.SamplingParameters{ParentContext: tt.ctx, TraceID: tid, Name: SpanName}
			if tt.decision != "" {
				p.Attributes = []attribute.KeyValue{keyDecision.String(tt.decision)}
			}
			if got := NewSampler(tt.allowed, tt.rejected).ShouldSample(p).Decision; got != tt.want {
				t.Errorf("decision = %v, want %v", got, tt.want)
			}
		})
	}
	if d := NewSampler(0.01, 1).Description(); d != "QuotaDecisionSampler{allowed:0.01,rejected:1}" {
		t.Errorf("Description = %q", d)
	}
}
