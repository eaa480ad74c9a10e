package telemetry

import (
	"context"
	"encoding/hex"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSettlementMetrics(t *testing.T) {
	p, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	pending := PendingStats{Held: 7, AgedOut: 2, Evicted: 1}
	r, err := NewRecorder(p, RecorderOptions{PendingStats: func() PendingStats { return pending }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	srv := httptest.NewServer(p.MetricsHandler())
	t.Cleanup(srv.Close)
	ctx := context.Background()
	r.RecordSettlement(ctx, &Settlement{Outcome: "refund", Tier: "standard", Refunded: 5})
	r.RecordSettlement(ctx, &Settlement{Outcome: "refund", Tier: "standard", Refunded: 3})
	r.RecordSettlement(ctx, &Settlement{Outcome: "adjust", Tier: "standard", Extra: 10, Owed: 4})
	r.RecordSettlement(ctx, &Settlement{Outcome: "unmatched"})
	r.RecordSettleSkipped(ctx, "malformed", 3)
	fams := scrape(t, srv.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"quota_settlements_total", map[string]string{"outcome": "refund", "tier": "standard"}, 2},
		{"quota_settlements_total", map[string]string{"outcome": "adjust", "tier": "standard"}, 1},
		{"quota_settlements_total", map[string]string{"outcome": "unmatched"}, 1},
		{"quota_settlement_tokens_total", map[string]string{"kind": "refunded", "tier": "standard"}, 8},
		{"quota_settlement_tokens_total", map[string]string{"kind": "extra", "tier": "standard"}, 10},
		{"quota_settlement_tokens_total", map[string]string{"kind": "owed", "tier": "standard"}, 4},
		{"quota_settlements_skipped_total", map[string]string{"reason": "malformed"}, 3},
		{"quota_settlements_pending", nil, 7},
		{"quota_settlements_pending_dropped_total", map[string]string{"reason": "aged_out"}, 2},
		{"quota_settlements_pending_dropped_total", map[string]string{"reason": "evicted"}, 1},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestSettlementSpanJoinsTheDecisionsTrace(t *testing.T) {
	p, r, s := newExportingRecorder(t, 0, 1, RecorderOptions{})
	var tid [16]byte
	var sid [8]byte
	hex.Decode(tid[:], []byte(envoyTraceID))
	hex.Decode(sid[:], []byte(envoySpanID))
	ctx := context.Background()
	r.RecordSettlement(ctx, &Settlement{Outcome: "adjust", Tier: "standard", DecisionID: "0193a5c4-6b1e-7c3a-9f00-000000000001",
		Status: 200, Extra: 10, Owed: 4, TraceID: tid, SpanID: sid, Sampled: true, Start: t0, End: t0.Add(time.Millisecond)})
	// Not sampled at the decision: no span, as the decision's trace has none.
	r.RecordSettlement(ctx, &Settlement{Outcome: "refund", TraceID: tid, SpanID: sid, Start: t0, End: t0})
	// No trace context: no span.
	r.RecordSettlement(ctx, &Settlement{Outcome: "refund", Start: t0, End: t0})
	flush(t, p)
	spans := s.Spans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	sp := spans[0]
	if sp.GetName() != SettleSpanName || hex.EncodeToString(sp.GetTraceId()) != envoyTraceID || hex.EncodeToString(sp.GetParentSpanId()) != envoySpanID {
		t.Fatalf("span %q in trace %x under %x, want %q in %s under %s", sp.GetName(), sp.GetTraceId(), sp.GetParentSpanId(), SettleSpanName, envoyTraceID, envoySpanID)
	}
	got := attrs(sp.GetAttributes())
	for k, v := range map[string]string{"quota.settle.outcome": "adjust", "quota.settle.extra": "10", "quota.settle.owed": "4",
		"quota.settle.refunded": "0", "quota.decision_id": "0193a5c4-6b1e-7c3a-9f00-000000000001", "http.response.status_code": "200"} {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if evs := sp.GetEvents(); len(evs) != 1 || evs[0].GetName() != "quota.settled" || attrs(evs[0].GetAttributes())["quota.settle.outcome"] != "adjust" {
		t.Errorf("events = %v, want one quota.settled with the outcome", evs)
	}
}
