package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/quotagate/quotagate/ledger"
)

// otlpReceiver is a real OTLP/gRPC collector endpoint (TraceService and
// MetricsService) that keeps what the binary exports. It is safe for
// concurrent use.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	endpoint string

	mu          sync.Mutex
	spans       []*tracepb.Span
	serviceName string
	metricNames map[string]bool
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{endpoint: "http://" + lis.Addr().String(), metricNames: map[string]bool{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	collectormetrics.RegisterMetricsServiceServer(srv, metricsExport{r: r})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		if name := attrMap(rs.GetResource().GetAttributes())["service.name"]; name != "" {
			r.serviceName = name
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// metricsExport adapts the receiver to MetricsService, whose Export has
// the same name as TraceService's.
type metricsExport struct {
	collectormetrics.UnimplementedMetricsServiceServer
	r *otlpReceiver
}

func (m metricsExport) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	m.r.mu.Lock()
	defer m.r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, met := range sm.GetMetrics() {
				m.r.metricNames[met.GetName()] = true
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// received returns the spans received so far.
func (r *otlpReceiver) received() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// attrMap flattens OTLP attributes to strings.
func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = strconv.FormatBool(v.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		default:
			out[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return out
}

// Envoy's trace contexts in the test: a sampled one sent in the gRPC
// metadata of a rejected Check, an unsampled one, and one sent as the HTTP
// authorization mode's own traceparent header.
const (
	envoyTraceID   = "5cf92f3577b34da6a3ce929d0e0e4736"
	envoyParentID  = "01f067aa0ba902b7"
	httpTraceID    = "6df92f3577b34da6a3ce929d0e0e4737"
	httpParentID   = "02f067aa0ba902b8"
	unsampledTrace = "7ef92f3577b34da6a3ce929d0e0e4738"
)

// TestTelemetry runs the binary exporting to a real OTLP receiver and
// proves the decision span, decision-aware sampling, /metrics, the logs'
// trace ids and the flush on shutdown. The span batcher's delay is set
// beyond the test's length, so every span that arrives was flushed by the
// shutdown.
func TestTelemetry(t *testing.T) {
	recv := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "quotagate-e2e")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
	authzAddr := freeAddr(t)
	dataDir := t.TempDir()
	s := startServer(t, "testdata/telemetry.yaml", "--authz-http-addr", authzAddr, "--log-level", "info",
		"--data-dir", dataDir)
	waitOutsideHourEdge()
	before := scrape(t, s.httpAddr)

	grpcID := rejectWithEnvoyParent(t, s, "carol")
	httpID := rejectOverHTTP(t, authzAddr, "dave")
	wantRejected := 2 + sampledLoad(t, s)
	total := 3 * 10 // ten users, each two allowed Checks and one refused

	after := scrape(t, s.httpAddr)
	if got := counterDelta(before, after, "quota_decisions_total", "decision", "deny"); got != float64(wantRejected) {
		t.Errorf("quota_decisions_total{decision=deny} moved by %v, want %d", got, wantRejected)
	}
	if got := counterDelta(before, after, "quota_decisions_total", "decision", "allow"); got != float64(total-wantRejected) {
		t.Errorf("quota_decisions_total{decision=allow} moved by %v, want %d", got, total-wantRejected)
	}
	if got := histogramCount(after, "quota_check_duration_seconds") - histogramCount(before, "quota_check_duration_seconds"); got != uint64(total) {
		t.Errorf("quota_check_duration_seconds count moved by %d, want %d", got, total)
	}
	if n := len(recv.received()); n != 0 {
		t.Logf("%d spans arrived before shutdown (batch delay not honoured?)", n)
	}
	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	spans := recv.received()
	if len(spans) != wantRejected {
		t.Fatalf("%d spans after shutdown, want exactly the %d rejections (sample_allowed: 0)", len(spans), wantRejected)
	}
	for _, sp := range spans {
		if a := attrMap(sp.GetAttributes()); sp.GetName() != "quota.check" || a["quota.decision"] != "deny" {
			t.Errorf("span %s with quota.decision %q, want only quota.check spans of rejections", sp.GetName(), a["quota.decision"])
		}
	}
	checkRejectionSpan(t, spanByDecision(t, spans, grpcID), grpcID, envoyTraceID, envoyParentID, "carol", "GET", "/v1/reports/daily")
	checkRejectionSpan(t, spanByDecision(t, spans, httpID), httpID, httpTraceID, httpParentID, "dave", "POST", "/v1/translate")
	checkLogJoinsTrace(t, s.stderr.String(), grpcID, spanByDecision(t, spans, grpcID))
	checkLedgerJoinsTrace(t, dataDir, spans, total)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.serviceName != "quotagate-e2e" {
		t.Errorf("resource service.name = %q, want OTEL_SERVICE_NAME's quotagate-e2e", recv.serviceName)
	}
	if !recv.metricNames["quota.decisions"] {
		t.Errorf("no quota.decisions metric over OTLP at shutdown; got %v", recv.metricNames)
	}
}

// rejectWithEnvoyParent makes user's third Check (refused) carry Envoy's
// sampled trace context in the gRPC metadata, while the checked request's
// own traceparent header differs: the metadata wins. It returns the
// decision id.
func rejectWithEnvoyParent(t *testing.T, s *server, user string) string {
	t.Helper()
	req := envoyRequest{method: "GET", path: "/v1/reports/daily?secret=1", headers: map[string]string{"x-user-id": user}}
	for i := 0; i < 2; i++ {
		if resp := s.check(t, req); resp.GetOkResponse() == nil {
			t.Fatalf("%s call %d refused: %v", user, i+1, resp)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+envoyTraceID+"-"+envoyParentID+"-01")
	resp, err := s.client.Check(ctx, req.checkRequest())
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 429 {
		t.Fatalf("third call = %v, %v; want 429", resp, err)
	}
	return headers(resp)["x-quota-decision-id"]
}

// rejectOverHTTP refuses user's third call on the HTTP authorization
// listener (Envoy http_service shape), with the trace context in the
// request's own traceparent header.
func rejectOverHTTP(t *testing.T, authzAddr, user string) string {
	t.Helper()
	for i := 1; i <= 3; i++ {
		req, err := http.NewRequest("POST", "http://"+authzAddr+"/v1/translate", strings.NewReader(words(100)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-User-Id", user)
		if i == 3 {
			req.Header.Set("Traceparent", "00-"+httpTraceID+"-"+httpParentID+"-01")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if i == 3 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Fatalf("%s HTTP call %d: status %d, want %d", user, i, resp.StatusCode, want)
		}
		if i == 3 {
			return resp.Header.Get("X-Quota-Decision-Id")
		}
	}
	return ""
}

// sampledLoad makes eight users call three times each: five with no trace
// context at all and three under an unsampled Envoy trace. Only the
// refusals may be exported. It returns the number of refusals.
func sampledLoad(t *testing.T, s *server) int {
	t.Helper()
	rejected := 0
	for u := 0; u < 8; u++ {
		user := fmt.Sprintf("load-%d", u)
		for i := 1; i <= 3; i++ {
			req := envoyRequest{method: "GET", path: "/v1/things", headers: map[string]string{"x-user-id": user}}.checkRequest()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if u < 5 {
				delete(req.GetAttributes().GetRequest().GetHttp().GetHeaders(), "traceparent")
			} else {
				parent := fmt.Sprintf("00-%s-%016x-00", unsampledTrace, u*10+i)
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", parent)
			}
			resp, err := s.client.Check(ctx, req)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if (resp.GetOkResponse() != nil) != (i < 3) {
				t.Fatalf("%s call %d: %v", user, i, resp)
			}
			if i == 3 {
				rejected++
			}
		}
	}
	return rejected
}

func spanByDecision(t *testing.T, spans []*tracepb.Span, id string) *tracepb.Span {
	t.Helper()
	for _, sp := range spans {
		if attrMap(sp.GetAttributes())["quota.decision_id"] == id {
			return sp
		}
	}
	t.Fatalf("no span with quota.decision_id %q among %d", id, len(spans))
	return nil
}

// checkRejectionSpan checks a refused Check's span: Envoy's parent, the
// quota.* attributes and the quota.rejected event.
func checkRejectionSpan(t *testing.T, sp *tracepb.Span, id, traceID, parentID, user, method, path string) {
	t.Helper()
	if got := hex.EncodeToString(sp.GetTraceId()); got != traceID {
		t.Errorf("trace id %s, want Envoy's %s", got, traceID)
	}
	if got := hex.EncodeToString(sp.GetParentSpanId()); got != parentID {
		t.Errorf("parent span id %s, want Envoy's %s", got, parentID)
	}
	if sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span kind %v, want server", sp.GetKind())
	}
	sum := sha256.Sum256([]byte(user))
	a := attrMap(sp.GetAttributes())
	want := map[string]string{
		"quota.decision": "deny", "quota.reason": "window_exceeded", "quota.tier": "freemium", "quota.priority": "low",
		"quota.limit.name": "hour", "quota.limit": "2", "quota.remaining": "0", "quota.decision_id": id,
		"quota.subject_hash": hex.EncodeToString(sum[:]), "http.request.method": method, "url.path": path,
		"http.response.status_code": "429", "quota.cost": "0",
	}
	if path == "/v1/translate" {
		want["quota.action"], want["quota.units"], want["quota.cost"] = "translate", "100", "1"
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("%s = %q, want %q", k, a[k], v)
		}
	}
	for _, k := range []string{"quota.reset", "quota.balance_after", "quota.units"} {
		if _, ok := a[k]; !ok {
			t.Errorf("attribute %s missing", k)
		}
	}
	if _, ok := a["quota.subject"]; ok {
		t.Errorf("raw quota.subject in the span; it must be hashed by default")
	}
	var event *tracepb.Span_Event
	for _, e := range sp.GetEvents() {
		if e.GetName() == "quota.rejected" {
			event = e
		}
	}
	if event == nil || attrMap(event.GetAttributes())["quota.message"] != seedMessage {
		t.Errorf("quota.rejected event = %v, want one with the client's message %q", event, seedMessage)
	}
}

// checkLogJoinsTrace finds the rejection's log line and checks that it
// carries the span's trace and span ids.
func checkLogJoinsTrace(t *testing.T, stderr, id string, sp *tracepb.Span) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["decision_id"] != id {
			continue
		}
		if line["trace_id"] != hex.EncodeToString(sp.GetTraceId()) || line["span_id"] != hex.EncodeToString(sp.GetSpanId()) {
			t.Errorf("log line %s: trace_id/span_id differ from the span's %x/%x", sc.Text(), sp.GetTraceId(), sp.GetSpanId())
		}
		if line["msg"] != "quota rejected" || line["level"] != "INFO" {
			t.Errorf("rejection log line %s, want msg \"quota rejected\" at INFO", sc.Text())
		}
		return
	}
	t.Errorf("no log line with decision_id %s in:\n%s", id, stderr)
}

// metricFamilies is a parsed /metrics scrape.
type metricFamilies = map[string]*dto.MetricFamily

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, httpAddr string) metricFamilies {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return fams
}

// counterDelta is how much the counter's series with label=value (summed
// over the other labels) moved between two scrapes.
func counterDelta(before, after metricFamilies, name, label, value string) float64 {
	sum := func(fams metricFamilies) float64 {
		var total float64
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total
	}
	return sum(after) - sum(before)
}

// histogramCount is the histogram's observation count over all series.
func histogramCount(fams metricFamilies, name string) uint64 {
	var n uint64
	for _, m := range fams[name].GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// TestTelemetryB3 joins a mesh's B3 trace: with OTEL_PROPAGATORS=b3multi,
// the x-b3-* entries of the gRPC metadata make the rejection's span a
// child of the mesh's span.
func TestTelemetryB3(t *testing.T) {
	recv := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_PROPAGATORS", "tracecontext,b3multi")
	s := startServer(t, "testdata/telemetry.yaml", "--log-level", "info")
	waitOutsideHourEdge()
	req := envoyRequest{method: "GET", path: "/v1/things", headers: map[string]string{"x-user-id": "mesh-user"}}
	for i := 1; i <= 3; i++ {
		r := req.checkRequest()
		delete(r.GetAttributes().GetRequest().GetHttp().GetHeaders(), "traceparent")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-b3-traceid", httpTraceID, "x-b3-spanid", envoyParentID, "x-b3-sampled", "1")
		resp, err := s.client.Check(ctx, r)
		cancel()
		if err != nil || (resp.GetOkResponse() != nil) != (i < 3) {
			t.Fatalf("call %d: %v %v", i, resp, err)
		}
	}
	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	var rejected []*tracepb.Span
	for _, sp := range recv.received() {
		if attrMap(sp.GetAttributes())["quota.decision"] == "deny" {
			rejected = append(rejected, sp)
		}
	}
	if len(rejected) != 1 {
		t.Fatalf("%d rejection spans, want 1", len(rejected))
	}
	if got, parent := hex.EncodeToString(rejected[0].GetTraceId()), hex.EncodeToString(rejected[0].GetParentSpanId()); got != httpTraceID || parent != envoyParentID {
		t.Errorf("span trace/parent = %s/%s, want the B3 context %s/%s", got, parent, httpTraceID, envoyParentID)
	}
}

// checkLedgerJoinsTrace checks the trace id of each of the want ledger
// records the run left in dataDir: a rejection names the trace of its
// exported span, even when the Check came without trace context; an allow
// under Envoy's unsampled trace names that trace; an allow with no trace
// context, which no sampler kept, names none.
func checkLedgerJoinsTrace(t *testing.T, dataDir string, spans []*tracepb.Span, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := ledger.Open(ctx, filepath.Join(dataDir, "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatalf("open the ledger: %v", err)
	}
	defer l.Close()
	traceOf := make(map[string]string, len(spans))
	for _, sp := range spans {
		traceOf[attrMap(sp.GetAttributes())["quota.decision_id"]] = hex.EncodeToString(sp.GetTraceId())
	}
	n := 0
	err = l.Scan(ctx, func(r ledger.Record) bool {
		if r.Kind != ledger.KindCharge && r.Kind != ledger.KindRejection {
			return true
		}
		n++
		id := r.ID.String()
		switch span, kept := traceOf[id]; {
		case kept && r.TraceID != span:
			t.Errorf("ledger record %s (%s %s): trace id %q, want its span's %s", id, r.Kind, r.Subject, r.TraceID, span)
		case kept:
		case r.Kind == ledger.KindRejection:
			t.Errorf("ledger record %s: a rejection without an exported span", id)
		case strings.HasPrefix(r.Subject, "load-") && r.Subject >= "load-5" && r.TraceID != unsampledTrace:
			t.Errorf("ledger record %s (%s, under Envoy's unsampled trace): trace id %q, want %s", id, r.Subject, r.TraceID, unsampledTrace)
		case strings.HasPrefix(r.Subject, "load-") && r.Subject < "load-5" && r.TraceID != "":
			t.Errorf("ledger record %s (%s, untraced allow): trace id %q, want none", id, r.Subject, r.TraceID)
		}
		return true
	})
	if err != nil {
		t.Fatalf("scan the ledger: %v", err)
	}
	if n != want {
		t.Errorf("%d charge and rejection records in the ledger, want one per Check: %d", n, want)
	}
}
