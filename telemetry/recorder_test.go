package telemetry

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"google.golang.org/grpc/metadata"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const (
	envoyTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	envoySpanID  = "00f067aa0ba902b7"
)

var t0 = time.Date(2026, 11, 27, 14, 2, 0, 0, time.UTC)

// fullDenial is a rejection with every field set.
func fullDenial() Decision {
	return Decision{
		Outcome: OutcomeDeny, Reason: "window_exceeded", Tier: "freemium", Priority: "low",
		Action: "translate", Workflow: "nightly", Cost: 15, Units: 3000,
		LimitName: "hour", Limit: 10, Remaining: 0, Reset: t0.Add(58 * time.Minute),
		BalanceAfter: 985, HasBalance: true, DecisionID: "0193a5c4-6b1e-7c3a-9f00-000000000001",
		Subject: "alice", Method: "POST", Path: "/v1/translate?lang=fr&key=secret", HTTPStatus: 429,
		Message: "Quota exceeded. Upgrade your plan or wait for the reset.",
	}
}

// newExportingRecorder sets up providers exporting to a fresh loopback
// OTLP/gRPC receiver and returns a Recorder on them.
func newExportingRecorder(t *testing.T, allowed, rejected float64, ropts RecorderOptions) (*Providers, *Recorder, *sink) {
	t.Helper()
	endpoint, s := startGRPCReceiver(t)
	p, err := Setup(context.Background(), Options{
		Getenv: envMap(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_PROPAGATORS":            "tracecontext,b3",
			"OTEL_SERVICE_NAME":           "quotagate-test",
		}),
		SampleAllowed: allowed, SampleRejected: rejected,
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	r, err := NewRecorder(p, ropts)
	if err != nil {
		t.Fatalf("NewRecorder: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return p, r, s
}

func flush(t *testing.T, p *Providers) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
}

func TestRejectionSpanHasEnvoyParentAndEveryAttribute(t *testing.T) {
	var logs bytes.Buffer
	p, r, s := newExportingRecorder(t, 0, 1, RecorderOptions{Logger: NewLogger(&logs, nil)})
	md := map[string][]string{"traceparent": {"00-" + envoyTraceID + "-" + envoySpanID + "-01"}}
	ctx := r.Extract(context.Background(), md, nil)
	r.Record(ctx, t0, fullDenial())
	flush(t, p)

	spans := s.Spans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	sp := spans[0]
	if got := hex.EncodeToString(sp.GetTraceId()); got != envoyTraceID {
		t.Errorf("trace id = %s, want Envoy's %s", got, envoyTraceID)
	}
	if got := hex.EncodeToString(sp.GetParentSpanId()); got != envoySpanID {
		t.Errorf("parent span id = %s, want Envoy's %s", got, envoySpanID)
	}
	if sp.GetName() != SpanName || sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span = %q kind %v, want %q server", sp.GetName(), sp.GetKind(), SpanName)
	}
	if got := time.Unix(0, int64(sp.GetStartTimeUnixNano())).UTC(); !got.Equal(t0) {
		t.Errorf("start = %v, want the request's start %v", got, t0)
	}
	want := map[string]string{
		"quota.decision": "deny", "quota.reason": "window_exceeded", "quota.tier": "freemium",
		"quota.priority": "low", "quota.action": "translate", "quota.workflow": "nightly",
		"quota.cost": "15", "quota.units": "3000", "quota.limit.name": "hour", "quota.limit": "10",
		"quota.remaining": "0", "quota.reset": "2026-11-27T15:00:00Z", "quota.balance_after": "985",
		"quota.decision_id":   "0193a5c4-6b1e-7c3a-9f00-000000000001",
		"quota.subject_hash":  HashSubject("alice"),
		"http.request.method": "POST", "url.path": "/v1/translate", "http.response.status_code": "429",
	}
	got := attrs(sp.GetAttributes())
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["quota.subject"]; ok {
		t.Errorf("raw subject exported without RawSubject")
	}
	if evs := sp.GetEvents(); len(evs) != 1 || evs[0].GetName() != "quota.rejected" ||
		attrs(evs[0].GetAttributes())["quota.message"] != fullDenial().Message {
		t.Errorf("events = %v, want one quota.rejected with the client message", evs)
	}

	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", logs.String(), err)
	}
	if line["trace_id"] != envoyTraceID || line["span_id"] != hex.EncodeToString(sp.GetSpanId()) {
		t.Errorf("log trace_id/span_id = %v/%v, want the span's %s/%x", line["trace_id"], line["span_id"], envoyTraceID, sp.GetSpanId())
	}
	if line["decision_id"] != fullDenial().DecisionID || line["level"] != "INFO" {
		t.Errorf("log line = %v, want level INFO with the decision id", line)
	}
}

func TestFailureModeSpan(t *testing.T) {
	p, r, s := newExportingRecorder(t, 0, 1, RecorderOptions{RawSubject: true})
	d := Decision{Outcome: OutcomeError, Reason: "store_unavailable", Tier: "standard", FailureModeApplied: "closed",
		Subject: "bob", HTTPStatus: 503, Err: errors.New("store: dial tcp: refused"),
		Phases: []Phase{{Name: "quota.store.load", Start: t0.Add(time.Millisecond), Duration: 5 * time.Millisecond, Err: errors.New("refused")}}}
	r.Record(context.Background(), t0, d)
	flush(t, p)
	spans := s.Spans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want quota.check and its store child", len(spans))
	}
	var check, child *tracepb.Span
	for _, sp := range spans {
		if sp.GetName() == SpanName {
			check = sp
		} else {
			child = sp
		}
	}
	if check == nil || child == nil || !bytes.Equal(child.GetParentSpanId(), check.GetSpanId()) {
		t.Fatalf("spans %v: want quota.store.load as a child of quota.check", spans)
	}
	got := attrs(check.GetAttributes())
	if got["quota.failure_mode_applied"] != "closed" || got["quota.subject"] != "bob" || got["quota.decision"] != "error" {
		t.Errorf("attributes = %v, want failure mode closed, raw subject bob, decision error", got)
	}
	if check.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("status = %v, want error", check.GetStatus())
	}
}

func TestSamplingKeepsRejections(t *testing.T) {
	const n = 50
	sampled := "00-" + envoyTraceID + "-" + envoySpanID + "-01"
	unsampled := "00-" + envoyTraceID + "-" + envoySpanID + "-00"
	tests := []struct {
		name        string
		traceparent string // empty: no parent
		outcome     Outcome
		want        int
	}{
		{name: "root rejections all kept", outcome: OutcomeDeny, want: n},
		{name: "root errors all kept", outcome: OutcomeError, want: n},
		{name: "root allows all dropped at sample_allowed 0", outcome: OutcomeAllow, want: 0},
		{name: "rejection kept when Envoy did not sample", traceparent: unsampled, outcome: OutcomeDeny, want: n},
		{name: "allow dropped when Envoy did not sample", traceparent: unsampled, outcome: OutcomeAllow, want: 0},
		{name: "allow kept when Envoy sampled", traceparent: sampled, outcome: OutcomeAllow, want: n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, r, s := newExportingRecorder(t, 0, 1, RecorderOptions{})
			for range n {
				ctx := context.Background()
				if tt.traceparent != "" {
					ctx = r.Extract(ctx, map[string][]string{"traceparent": {tt.traceparent}}, nil)
				}
				r.Record(ctx, t0, Decision{Outcome: tt.outcome, Reason: "ok", Tier: "freemium"})
			}
			flush(t, p)
			if got := len(s.Spans()); got != tt.want {
				t.Errorf("%d of %d spans arrived, want %d", got, n, tt.want)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	const (
		b3TraceID = "80f198ee56343ba864fe8b2a57d3eff7"
		b3SpanID  = "e457b5a2e4d86bd1"
		otherID   = "0af7651916cd43dd8448eb211c80319c"
	)
	tp := func(id string) string { return "00-" + id + "-b7ad6b7169203331-01" }
	tests := []struct {
		name    string
		md      map[string][]string
		headers map[string]string
		want    string // trace id, empty for none
	}{
		{name: "traceparent in grpc metadata", md: map[string][]string{"traceparent": {tp(envoyTraceID)}}, want: envoyTraceID},
		{name: "b3 single in grpc metadata", md: map[string][]string{"b3": {b3TraceID + "-" + b3SpanID + "-1"}}, want: b3TraceID},
		{name: "b3 multi in grpc metadata", md: map[string][]string{"x-b3-traceid": {b3TraceID}, "x-b3-spanid": {b3SpanID}, "x-b3-sampled": {"1"}}, want: b3TraceID},
		{name: "metadata wins over headers", md: map[string][]string{"traceparent": {tp(envoyTraceID)}}, headers: map[string]string{"traceparent": tp(otherID)}, want: envoyTraceID},
		{name: "fallback to checked request headers", md: map[string][]string{"x-request-id": {"r1"}}, headers: map[string]string{"traceparent": tp(otherID)}, want: otherID},
		{name: "fallback to b3 headers", headers: map[string]string{"x-b3-traceid": b3TraceID, "x-b3-spanid": b3SpanID}, want: b3TraceID},
		{name: "nothing", md: map[string][]string{"x-request-id": {"r1"}}, headers: map[string]string{":path": "/"}},
		{name: "malformed traceparent", md: map[string][]string{"traceparent": {"00-zz-yy-01"}}},
	}
	p, err := Setup(context.Background(), Options{Getenv: envMap(map[string]string{"OTEL_PROPAGATORS": "tracecontext, b3"})})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecorder(p, RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			incoming := context.Background()
			if tt.md != nil {
				incoming = metadata.NewIncomingContext(incoming, metadata.MD(tt.md))
			}
			for name, ctx := range map[string]context.Context{
				"Extract":         r.Extract(context.Background(), tt.md, tt.headers),
				"ExtractIncoming": r.ExtractIncoming(incoming, tt.headers),
			} {
				sc := trace.SpanContextFromContext(ctx)
				got := ""
				if sc.IsValid() {
					got = sc.TraceID().String()
				}
				if got != tt.want {
					t.Errorf("%s: trace id = %q, want %q", name, got, tt.want)
				}
			}
		})
	}
}

func TestStripQuery(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "plain", in: "/v1/translate", want: "/v1/translate"},
		{name: "query", in: "/v1/translate?key=secret", want: "/v1/translate"},
		{name: "fragment", in: "/a#frag", want: "/a"},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StripQuery(tt.in); got != tt.want {
				t.Errorf("StripQuery(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRecorderWithoutProvidersStillLogs(t *testing.T) {
	var logs bytes.Buffer
	r, err := NewRecorder(nil, RecorderOptions{Logger: NewLogger(&logs, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := r.Extract(context.Background(), map[string][]string{"traceparent": {"00-" + envoyTraceID + "-" + envoySpanID + "-01"}}, nil)
	r.Record(ctx, t0, fullDenial())
	if !strings.Contains(logs.String(), `"trace_id":"`+envoyTraceID+`"`) {
		t.Errorf("log %q lacks Envoy's trace id", logs.String())
	}
}

func TestRootAllowsAreSampledAtTheConfiguredRatio(t *testing.T) {
	const n = 2000
	p, r, s := newExportingRecorder(t, 0.5, 1, RecorderOptions{})
	for range n {
		r.Record(context.Background(), t0, Decision{Outcome: OutcomeAllow, Reason: "ok"})
	}
	flush(t, p)
	// Binomial(2000, 0.5): 800..1200 is more than eight standard deviations wide.
	if got := len(s.Spans()); got < 800 || got > 1200 {
		t.Errorf("%d of %d allows kept at sample_allowed 0.5, want about %d", got, n, n/2)
	}
}

// TestRecordReturnsTheTraceOfItsSpan: a Check that arrived without trace
// context still gets a trace of its own when its span is kept, and Record
// hands it back so that the ledger record can name it; an allow that no
// sampler keeps starts no trace.
func TestRecordReturnsTheTraceOfItsSpan(t *testing.T) {
	p, r, s := newExportingRecorder(t, 0, 1, RecorderOptions{})
	ctx := r.Record(context.Background(), t0, fullDenial())
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		t.Fatal("Record returned no trace for a kept rejection without trace context")
	}
	flush(t, p)
	spans := s.Spans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	if got := hex.EncodeToString(spans[0].GetTraceId()); got != sc.TraceID().String() {
		t.Errorf("exported trace id = %s, Record returned %s", got, sc.TraceID())
	}
	ctx = r.Record(context.Background(), t0, Decision{Outcome: OutcomeAllow, Reason: "ok", Tier: "standard"})
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		t.Errorf("an allow sampled at 0 got trace %s, want none", sc.TraceID())
	}
}
