package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// scrape fetches url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want, or -1.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
series:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetricsEndpointParsesAndMoves(t *testing.T) {
	p, err := Setup(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	hits := int64(0)
	r, err := NewRecorder(p, RecorderOptions{
		EngineStats: func() EngineStats {
			return EngineStats{CacheHits: hits, CacheMisses: 2, CacheEvictions: 1, Subjects: 3, Shards: 16, EventsEmitted: 4}
		},
		TierStats: func() []TierStat {
			return []TierStat{{Tier: "freemium", Limit: "hour", Max: 10, Utilization: 0.5, HasUtilization: true}, {Tier: "standard", Limit: "hour", Max: 100}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	srv := httptest.NewServer(p.MetricsHandler())
	t.Cleanup(srv.Close)

	deny := map[string]string{"tier": "freemium", "decision": "deny", "reason": "window_exceeded", "action": "translate"}
	allow := map[string]string{"tier": "freemium", "decision": "allow", "reason": "ok", "action": "translate"}
	record := func(nAllow, nDeny int) {
		for range nAllow {
			r.Record(context.Background(), t0, Decision{Outcome: OutcomeAllow, Reason: "ok", Tier: "freemium", Action: "translate", Cost: 15, Charged: 15, LimitName: "hour", Limit: 10, Remaining: 5})
		}
		for range nDeny {
			r.Record(context.Background(), t0, Decision{Outcome: OutcomeDeny, Reason: "window_exceeded", Tier: "freemium", Action: "translate", Cost: 15})
		}
	}
	steps := []struct {
		name                  string
		allows, denies        int
		hits                  int64
		wantAllow, wantDeny   float64
		wantTokens, wantHits  float64
		wantLatencyObservable float64
	}{
		{name: "first requests", allows: 2, denies: 1, hits: 5, wantAllow: 2, wantDeny: 1, wantTokens: 30, wantHits: 5, wantLatencyObservable: 2},
		{name: "more requests move every series", allows: 1, denies: 3, hits: 9, wantAllow: 3, wantDeny: 4, wantTokens: 45, wantHits: 9, wantLatencyObservable: 3},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			hits = st.hits
			record(st.allows, st.denies)
			r.RecordStoreOp(context.Background(), "load", 2*time.Millisecond, nil)
			fams := scrape(t, srv.URL)
			checks := []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"quota_decisions_total", allow, st.wantAllow},
				{"quota_decisions_total", deny, st.wantDeny},
				{"quota_tokens_charged_total", map[string]string{"tier": "freemium", "action": "translate"}, st.wantTokens},
				{"quota_check_duration_seconds", map[string]string{"tier": "freemium", "decision": "allow"}, st.wantLatencyObservable},
				{"quota_engine_cache_hits_total", nil, st.wantHits},
				{"quota_engine_cache_misses_total", nil, 2},
				{"quota_engine_cache_evictions_total", nil, 1},
				{"quota_engine_shards", nil, 16},
				{"quota_events_emitted_total", nil, 4},
				{"quota_tier_limit", map[string]string{"tier": "freemium", "limit": "hour"}, 10},
				{"quota_tier_utilization_ratio", map[string]string{"tier": "freemium", "limit": "hour"}, 0.5},
				{"quota_tier_limit", map[string]string{"tier": "standard", "limit": "hour"}, 100},
				{"quota_store_duration_seconds", map[string]string{"op": "load", "outcome": "ok"}, st.wantLatencyObservable - 1},
				{"quota_tier_utilization_ratio", map[string]string{"tier": "standard"}, -1},
				{"quota_limit_utilization", map[string]string{"tier": "freemium", "limit": "hour"}, st.wantLatencyObservable},
			}
			for _, c := range checks {
				if got := value(fams, c.name, c.labels); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
		})
	}
}

func TestMetricsOverOTLP(t *testing.T) {
	tests := []struct {
		name  string
		start func(testing.TB) (string, *sink)
		proto string
	}{
		{name: "grpc", start: startGRPCReceiver, proto: "grpc"},
		{name: "http/protobuf", start: startHTTPReceiver, proto: "http/protobuf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint, s := tt.start(t)
			p, err := Setup(context.Background(), Options{
				Getenv:        envMap(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": tt.proto}),
				SampleAllowed: 1, SampleRejected: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			r, err := NewRecorder(p, RecorderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r.Record(context.Background(), t0, Decision{Outcome: OutcomeAllow, Reason: "ok", Tier: "standard"})
			flush(t, p)
			if s.Metric("quota.decisions") == nil {
				t.Errorf("quota.decisions did not arrive over OTLP %s", tt.proto)
			}
			if n := len(s.Spans()); n != 1 {
				t.Errorf("%d spans arrived over OTLP %s, want 1", n, tt.proto)
			}
		})
	}
}

func TestAttributeSetsAreBounded(t *testing.T) {
	c := setCache{build: func(k setKey) attribute.Set { return attribute.NewSet(mkAction.String(k.action)) }}
	for i := range maxAttrSets + 500 {
		c.get(setKey{tier: "t", decision: "allow", reason: "ok", action: strconv.Itoa(i)})
	}
	if n := c.n.Load(); n > maxAttrSets+1 {
		t.Errorf("%d attribute sets, want at most %d", n, maxAttrSets+1)
	}
	if got := c.get(setKey{tier: "t", decision: "allow", reason: "ok", action: "new"}); got.set.Len() != 1 {
		t.Errorf("overflow set = %v", got)
	}
	over := c.get(setKey{action: "fresh"}).set
	if v, _ := over.Value(mkAction); v.AsString() != "other" {
		t.Errorf("overflow action = %q, want other", v.AsString())
	}
}

// TestRecordSetsMatchCaches checks that the sets record takes from its
// one lookup per decision are those of the per-instrument caches, before
// and after they overflow, and that a decision that charged nothing or
// names no limit makes no token or utilization set.
func TestRecordSetsMatchCaches(t *testing.T) {
	in, err := newInstruments(metricnoop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxAttrSets + 500 {
		action := strconv.Itoa(i)
		k := recordKey{tier: "t", decision: "allow", reason: "ok", action: action, limit: "hour", charged: i%2 == 0}
		tokens := in.tokenSets.n.Load()
		got := in.sets(k)
		if got.decision != in.decisionSets.get(setKey{tier: "t", decision: "allow", reason: "ok", action: action}) ||
			got.latency != in.latencySets.get(setKey{tier: "t", decision: "allow"}) ||
			got.util != in.utilSets.get(setKey{tier: "t", reason: "hour"}) {
			t.Fatalf("action %s: sets differ from the caches'", action)
		}
		if k.charged && got.tokens != in.tokenSets.get(setKey{tier: "t", action: action}) {
			t.Fatalf("action %s: token set differs from the cache's", action)
		}
		if !k.charged && (got.tokens != nil || in.tokenSets.n.Load() != tokens) {
			t.Fatalf("action %s charged nothing but made a token set", action)
		}
		if again := in.sets(k); again.decision != got.decision || again.tokens != got.tokens {
			t.Fatalf("action %s: a second lookup differs", action)
		}
	}
	if got := in.sets(recordKey{tier: "t", decision: "deny", reason: "r"}); got.util != nil || got.tokens != nil {
		t.Errorf("no limit and no charge gave util %v tokens %v", got.util, got.tokens)
	}
	if n := in.recordSets.n.Load(); n > maxAttrSets {
		t.Errorf("%d record sets cached, want at most %d", n, maxAttrSets)
	}
}
