package extauthz

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/quotagate/quotagate/engine"
)

// logEntry is an HTTP access log entry as Envoy's gRPC access logger sends
// it: the ext_authz decision id in the dynamic metadata (when id is set),
// the response code (0: none) and the logged response headers.
func logEntry(id string, code uint32, headers map[string]string) *accesslogv3.HTTPAccessLogEntry {
	e := &accesslogv3.HTTPAccessLogEntry{
		CommonProperties: &accesslogv3.AccessLogCommon{},
		Request:          &accesslogv3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_POST, Path: "/v1/translate"},
		Response:         &accesslogv3.HTTPResponseProperties{ResponseHeaders: headers},
	}
	if code != 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(code)
		e.Response.ResponseCodeDetails = "via_upstream"
	}
	if id != "" {
		md, _ := structpb.NewStruct(map[string]any{"decision_id": id, "tier": "standard"})
		e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{ExtAuthzFilter: md}}
	}
	return e
}

// logBatch is one StreamAccessLogsMessage of HTTP entries; the first of a
// stream carries the identifier.
func logBatch(first bool, entries ...*accesslogv3.HTTPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
	if first {
		m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-1"}, LogName: "quotagate"}
	}
	return m
}

// settleRecorder keeps what the service reports.
type settleRecorder struct {
	mu      sync.Mutex
	settled []engine.Settled
	skipped map[string]int
}

func (r *settleRecorder) options() AccessLogOptions {
	return AccessLogOptions{
		OnSettled: func(_ context.Context, _ *engine.Settlement, s *engine.Settled) {
			r.mu.Lock()
			r.settled = append(r.settled, *s)
			r.mu.Unlock()
		},
		OnSkipped: func(_ context.Context, reason string, n int) {
			r.mu.Lock()
			if r.skipped == nil {
				r.skipped = map[string]int{}
			}
			r.skipped[reason] += n
			r.mu.Unlock()
		},
	}
}

func (r *settleRecorder) outcomes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.settled {
		out = append(out, s.Outcome.String())
	}
	return out
}

// alsFixture is a Check server and the access log service on one gRPC
// server, as serve runs them by default.
type alsFixture struct {
	eng   *engine.Engine
	check authv3.AuthorizationClient
	als   alsv3.AccessLogServiceClient
	svc   *AccessLogService
	rec   *settleRecorder
}

// newALSFixture builds the fixture at t0, with translate settled from
// x-usage-words and refunded (calls too) on 503 and no response; tune, if
// set, changes the engine's rules and options first.
func newALSFixture(t testing.TB, o AccessLogOptions, tune func(*engine.Rules, *engine.Options)) *alsFixture {
	t.Helper()
	c := &clock{now: t0}
	cfg, opts := testEngineRules(), engine.Options{Now: c.Now}
	cfg.Actions["translate"] = engine.ActionConfig{PerThousand: 5, Unit: "words", Settle: &engine.SettleRule{
		RefundStatuses: []engine.StatusRange{{From: 503, To: 503}, {}}, RefundWindows: true, UsageHeader: "x-usage-words"}}
	if tune != nil {
		tune(&cfg, &opts)
	}
	eng, err := engine.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(eng, Options{Now: c.Now}, Policy{Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &settleRecorder{}
	ro := rec.options()
	if o.MaxEntries != 0 {
		ro.MaxEntries = o.MaxEntries
	}
	als, err := NewAccessLogService(eng, ro)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, _ := startGRPCRegistered(t, s, GRPCOptions{}, als.Register)
	return &alsFixture{eng: eng, check: authv3.NewAuthorizationClient(conn), als: alsv3.NewAccessLogServiceClient(conn), svc: als, rec: rec}
}

// decide checks a translate request of words words for sam (standard:
// 1000 tokens, 100 calls an hour) and returns its decision id.
func (f *alsFixture) decide(t testing.TB, words int) string {
	t.Helper()
	body := strings.TrimSpace(strings.Repeat("word ", words))
	resp, err := f.check.Check(context.Background(), envoyCheck(body, map[string]string{"x-user-id": "sam", "content-length": "1"},
		map[string]string{"action": "translate"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	id := headerValue(resp.GetOkResponse().GetResponseHeadersToAdd(), HeaderDecisionID)
	if id == "" {
		t.Fatalf("check was not allowed: %v", resp)
	}
	return id
}

// stream sends the batches on one stream and waits for its close.
func (f *alsFixture) stream(t testing.TB, batches ...*alsv3.StreamAccessLogsMessage) {
	t.Helper()
	st, err := f.als.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if err := st.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (f *alsFixture) balanceAndCalls(t testing.TB) (int64, int64) {
	t.Helper()
	s, err := f.eng.Status(context.Background(), "sam")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range s.Limits {
		if l.Name == "hour" {
			return s.Balance, l.Used
		}
	}
	t.Fatalf("no hour limit in %+v", s.Limits)
	return 0, 0
}

func TestAccessLogSettles(t *testing.T) {
	tests := []struct {
		name     string
		code     uint32
		headers  map[string]string
		outcome  string
		balance  int64
		calls    int64
		settled2 string // outcome of the same entry sent again
	}{
		{name: "503 refunds tokens and calls", code: 503, outcome: "refund", balance: 1000, calls: 0, settled2: "duplicate"},
		{name: "no response refunds", code: 0, outcome: "refund", balance: 1000, calls: 0, settled2: "duplicate"},
		{name: "200 keeps", code: 200, outcome: "kept", balance: 995, calls: 1, settled2: "duplicate"},
		{name: "usage header adjusts down", code: 200, headers: map[string]string{"X-Usage-Words": "200"}, outcome: "adjust", balance: 999, calls: 1, settled2: "duplicate"},
		{name: "usage header adjusts up", code: 200, headers: map[string]string{"x-usage-words": "3000"}, outcome: "adjust", balance: 985, calls: 1, settled2: "duplicate"},
		{name: "bad usage header is invalid", code: 200, headers: map[string]string{"x-usage-words": "1e9"}, outcome: "invalid", balance: 995, calls: 1, settled2: "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newALSFixture(t, AccessLogOptions{}, nil)
			id := f.decide(t, 1000) // 5 tokens, 1 call
			if b, c := f.balanceAndCalls(t); b != 995 || c != 1 {
				t.Fatalf("after the check: balance %d calls %d, want 995 and 1", b, c)
			}
			f.stream(t, logBatch(true, logEntry(id, tt.code, tt.headers)))
			f.stream(t, logBatch(true, logEntry(id, tt.code, tt.headers)))
			if got := f.rec.outcomes(); len(got) != 2 || got[0] != tt.outcome || got[1] != tt.settled2 {
				t.Errorf("outcomes %v, want [%s %s]", got, tt.outcome, tt.settled2)
			}
			if b, c := f.balanceAndCalls(t); b != tt.balance || c != tt.calls {
				t.Errorf("balance %d calls %d, want %d and %d", b, c, tt.balance, tt.calls)
			}
		})
	}
}

func TestAccessLogSkipsWhatItCannotSettle(t *testing.T) {
	f := newALSFixture(t, AccessLogOptions{MaxEntries: 3}, nil)
	id := f.decide(t, 1000)
	fromHeader := logEntry("", 503, nil)
	fromHeader.Request.RequestHeaders = map[string]string{HeaderDecisionID: id}
	tooMany := map[string]string{}
	for i := range maxSettleHeaders + 1 {
		tooMany["x-h-"+strings.Repeat("a", i)] = "1"
	}
	f.stream(t,
		logBatch(true, logEntry("", 503, nil), logEntry("not-a-uuid", 503, nil), logEntry(strings.Repeat("0", 5000), 503, nil)),
		logBatch(false, logEntry(id, 503, nil), logEntry(id, 503, nil), logEntry(id, 503, nil), logEntry(id, 503, nil)), // over MaxEntries
		logBatch(false, logEntry("0190a8f0-0000-7000-8000-000000000000", 503, nil), logEntry(id, 200, tooMany)),
		&alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{
			LogEntry: []*accesslogv3.TCPAccessLogEntry{{}}}}},
		&alsv3.StreamAccessLogsMessage{},
		logBatch(false, fromHeader),
	)
	want := map[string]int{SkipNoDecision: 1, SkipMalformed: 2, SkipOversized: 5, SkipTCP: 1}
	f.rec.mu.Lock()
	for k, n := range want {
		if f.rec.skipped[k] != n {
			t.Errorf("skipped %s: %d, want %d (all: %v)", k, f.rec.skipped[k], n, f.rec.skipped)
		}
	}
	f.rec.mu.Unlock()
	if got := f.rec.outcomes(); strings.Join(got, ",") != "unmatched,refund" {
		t.Errorf("outcomes %v, want [unmatched refund] (the header fallback refunds)", got)
	}
	if b, c := f.balanceAndCalls(t); b != 1000 || c != 0 {
		t.Errorf("balance %d calls %d, want 1000 and 0", b, c)
	}
}

func TestSettlementOfNoUpstreamResponse(t *testing.T) {
	id := "0190a8f0-0000-7000-8000-000000000001"
	reset := logEntry(id, 503, nil)
	reset.Response.ResponseCodeDetails = "upstream_reset_before_response_started{connection_termination}"
	reset.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRemoteReset: true}
	timeout := logEntry(id, 504, nil)
	timeout.Response.ResponseCodeDetails = "upstream_response_timeout"
	timeout.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRequestTimeout: true}
	upstream503 := logEntry(id, 503, nil)
	upstream503.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRemoteReset: true}
	tests := []struct {
		name string
		e    *accesslogv3.HTTPAccessLogEntry
		want int
	}{
		{"reset", reset, 0}, {"timeout", timeout, 0}, {"upstream's own 503", upstream503, 503}, {"no code", logEntry(id, 0, nil), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reason := settlementOf(viewOf(t, tt.e), &settleScratch{})
			if reason != "" || s.Status != tt.want {
				t.Errorf("status %d (%q), want %d", s.Status, reason, tt.want)
			}
		})
	}
}

func TestTraceRefOf(t *testing.T) {
	tests := []struct {
		name, header string
		ok, sampled  bool
	}{
		{"sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"future version with more", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz", true, true},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"bad hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false, false},
		{"short", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false, false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := traceRefOf(map[string]string{"traceparent": tt.header})
			if ok := got != (engine.TraceRef{}); ok != tt.ok || got.Sampled != tt.sampled {
				t.Errorf("traceRefOf(%q) = %+v, want ok %v sampled %v", tt.header, got, tt.ok, tt.sampled)
			}
			if tt.ok && got.SpanID != [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7} {
				t.Errorf("span id %x", got.SpanID)
			}
		})
	}
}

func TestAccessLogShutdownEndsStreams(t *testing.T) {
	f := newALSFixture(t, AccessLogOptions{}, nil)
	id := f.decide(t, 1000)
	st, err := f.als.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(logBatch(true, logEntry(id, 503, nil))); err != nil {
		t.Fatal(err)
	}
	f.svc.Shutdown()
	f.svc.Shutdown() // idempotent
	done := make(chan error, 1)
	// Envoy never closes its side: wait for the server's end.
	go func() { done <- st.RecvMsg(new(alsv3.StreamAccessLogsResponse)) }()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream ended with %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived Shutdown")
	}
	if b, _ := f.balanceAndCalls(t); b != 1000 {
		t.Errorf("balance %d, want 1000: the batch sent before Shutdown is settled", b)
	}
}

// viewOf decodes e as the service does, from the wire form of a batch.
func viewOf(t testing.TB, e *accesslogv3.HTTPAccessLogEntry) *logView {
	t.Helper()
	b, err := proto.Marshal(logBatch(true, e))
	if err != nil {
		t.Fatal(err)
	}
	d := &alsDecode{max: 10}
	if err := decodeALS(b, d); err != nil || len(d.entries) != 1 {
		t.Fatalf("decodeALS: %d entries, %v", len(d.entries), err)
	}
	return &d.entries[0]
}

// TestAccessLogOnAPlainServer registers the service the generated way, on
// a gRPC server with the standard codec: it settles all the same.
func TestAccessLogOnAPlainServer(t *testing.T) {
	f := newALSFixture(t, AccessLogOptions{}, nil)
	id := f.decide(t, 1000)
	gs := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(gs, f.svc)
	lis := bufconn.Listen(1 << 20)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///plain",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	plain := &alsFixture{eng: f.eng, als: alsv3.NewAccessLogServiceClient(conn), rec: f.rec}
	plain.stream(t, logBatch(true, logEntry(id, 503, nil)))
	if b, c := f.balanceAndCalls(t); b != 1000 || c != 0 {
		t.Errorf("balance %d calls %d, want 1000 and 0", b, c)
	}
}
