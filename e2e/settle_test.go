package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// settleConfig prices translate at 1 token per word and settles it from
// the x-usage-words header, refunding tokens and calls on 503 and on no
// response; summarize (10 tokens a call) has no settle block, so the
// default applies (refund on 5xx and no response, calls kept). redis, if
// set, is the store block's redis target.
func settleConfig(t *testing.T, redis string) string {
	t.Helper()
	cfg := `quota_manager:
  tiers:
    std:
      api_calls_per_hour: 100
      tokens: {grant: 1000, every: month}
      failure_mode: closed
  default_tier: std
  actions:
    translate:
      tokens_per_1000_units: 1000
      unit: words
      settle: {refund_on: [503, no_response], refund_windows: true, usage_header: x-usage-words}
    summarize: {tokens_per_call: 10}
identity:
  sources: [header]
  header: {name: x-user-id, trusted: true}
`
	if redis != "" {
		cfg += "store:\n  kind: redis\n  redis: {addr: " + redis + ", timeout: 250ms}\n"
	}
	path := filepath.Join(t.TempDir(), "settle.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// decide checks an action for subject with the given words and returns
// the decision id that Envoy keeps in the ext_authz dynamic metadata.
func (s *server) decide(t *testing.T, subject, action string, n int) string {
	t.Helper()
	resp := s.check(t, envoyRequest{path: "/v1/" + action, action: action, body: words(n),
		headers: map[string]string{"x-user-id": subject}})
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("%s %s: refused: %v", subject, action, resp.GetDeniedResponse())
	}
	id := resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
	if id == "" {
		t.Fatalf("%s %s: no decision_id in the dynamic metadata: %v", subject, action, resp.GetDynamicMetadata())
	}
	return id
}

// outcome is how an upstream answered one request, as Envoy logs it.
type outcome struct {
	id      string // the decision id in the ext_authz metadata; "" for none
	code    uint32 // 0: no response (the upstream reset)
	headers map[string]string
}

// accessLogEntry is the HTTPAccessLogEntry Envoy's http_grpc_access_log
// sends for one request that went through ext_authz: the filter's dynamic
// metadata, the request and response properties with the logged headers,
// and for a reset upstream no response code but the UR flag.
func accessLogEntry(o outcome) *accesslogv3.HTTPAccessLogEntry {
	start := time.Now().Add(-50 * time.Millisecond)
	e := &accesslogv3.HTTPAccessLogEntry{
		ProtocolVersion: accesslogv3.HTTPAccessLogEntry_HTTP2,
		CommonProperties: &accesslogv3.AccessLogCommon{
			SampleRate:                     1,
			DownstreamRemoteAddress:        sockAddr("203.0.113.7", 51234),
			DownstreamLocalAddress:         sockAddr("10.0.0.2", 8443),
			StartTime:                      timestamppb.New(start),
			TimeToLastDownstreamTxByte:     durationpb.New(40 * time.Millisecond),
			UpstreamCluster:                "api",
			UpstreamRemoteAddress:          sockAddr("10.0.0.9", 8080),
			RouteName:                      "api",
			ResponseFlags:                  &accesslogv3.ResponseFlags{},
			TimeToFirstUpstreamRxByte:      durationpb.New(30 * time.Millisecond),
			UpstreamTransportFailureReason: "",
		},
		Request: &accesslogv3.HTTPRequestProperties{
			RequestMethod: corev3.RequestMethod_POST, Scheme: "https", Authority: "api.example.com",
			Path: "/v1/translate", UserAgent: "e2e/1.0", RequestId: "4f2c8a0e-1b7d-4e3a-9c55-000000000001",
			RequestHeadersBytes: 420, RequestBodyBytes: 600,
		},
		Response: &accesslogv3.HTTPResponseProperties{ResponseHeaders: o.headers, ResponseHeadersBytes: 120, ResponseBodyBytes: 800},
	}
	if o.code != 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(o.code)
		e.Response.ResponseCodeDetails = "via_upstream"
	} else {
		e.CommonProperties.ResponseFlags.UpstreamRemoteReset = true
		e.Response.ResponseCodeDetails = "upstream_reset_before_response_started{remote_reset}"
	}
	if o.id != "" {
		md, err := structpb.NewStruct(map[string]any{"decision_id": o.id, "tier": "std"})
		if err != nil {
			panic(err)
		}
		e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.filters.http.ext_authz": md,
		}}
	}
	return e
}

// streamAccessLog sends batches of outcomes on one StreamAccessLogs stream,
// the first message carrying the identifier as Envoy's does, and closes it.
func streamAccessLog(t *testing.T, addr string, batches ...[]outcome) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range batches {
		entries := make([]*accesslogv3.HTTPAccessLogEntry, len(b))
		for j, o := range b {
			entries[j] = accessLogEntry(o)
		}
		msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
			HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}}
		if i == 0 {
			msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{
				Node: &corev3.Node{Id: "envoy-e2e", Cluster: "edge"}, LogName: "quotagate_settlement"}
		}
		if err := st.Send(msg); err != nil {
			t.Fatalf("send access log batch %d: %v", i, err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatalf("close the access log stream: %v", err)
	}
}

// subjectState is the balance and hourly calls of a subject from the
// admin API.
type subjectState struct{ balance, calls int64 }

func stateOf(t *testing.T, adminAddr, subject string) subjectState {
	t.Helper()
	return subjectState{balance: getSubject(t, adminAddr, subject).Balance.Balance, calls: hourUsed(t, adminAddr, subject)}
}

func wantState(t *testing.T, adminAddr, subject string, want subjectState, step string) {
	t.Helper()
	if got := stateOf(t, adminAddr, subject); got != want {
		t.Fatalf("%s: %s has balance %d and %d calls this hour, want %d and %d", step, subject, got.balance, got.calls, want.balance, want.calls)
	}
}

// settledUsage is one row of quotagate usage --format json.
type settledUsage struct {
	Calls, Units, Tokens, Rejections int64
	Refunded, Extra, Owed            int64
}

// wantUsage checks quotagate usage of subject, this month, in the ledger
// of the data directory dir.
func wantUsage(t *testing.T, dir, subject string, want settledUsage) {
	t.Helper()
	out, errOut, code := runBinary(t, nil, "usage", "--data-dir", dir, "--subject", subject, "--by", "month", "--format", "json")
	if code != 0 {
		t.Fatalf("quotagate usage: exit %d\n%s", code, errOut)
	}
	var rows []settledUsage
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("quotagate usage output %q: %v", out, err)
	}
	if len(rows) != 1 || rows[0] != want {
		t.Errorf("quotagate usage = %s, want one month with %+v", out, want)
	}
}

// metricValue returns the value of the Prometheus series whose line
// starts with prefix (name and labels), or -1.
func metricValue(t *testing.T, httpAddr, name string, labels ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, "http://"+httpAddr+"/metrics"), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			return v
		}
	}
	return -1
}

// TestSettlement settles a running quotagate's decisions from access log
// batches shaped as Envoy sends them: a refund on 503 (tokens and calls),
// an adjustment up and one down from the usage header, a duplicate batch,
// an unknown id and a reset upstream; after each, the balance and the
// hour window are exact, and so are quotagate usage and the ledger.
func TestSettlement(t *testing.T) {
	waitOutsideHourEdge()
	dir := filepath.Join(t.TempDir(), "data")
	adminAddr := freeAddr(t)
	args := []string{"--data-dir", dir, "--admin-addr", adminAddr}
	s := startServer(t, settleConfig(t, ""), args...)

	a := s.decide(t, "ann", "translate", 100) // 100 tokens
	wantState(t, adminAddr, "ann", subjectState{900, 1}, "after the first check")
	streamAccessLog(t, s.grpcAddr, []outcome{{id: a, code: 503}})
	wantState(t, adminAddr, "ann", subjectState{1000, 0}, "after a 503")

	up := s.decide(t, "ann", "translate", 100)
	down := s.decide(t, "ann", "translate", 100)
	wantState(t, adminAddr, "ann", subjectState{800, 2}, "after two more checks")
	batch := []outcome{
		{id: up, code: 200, headers: map[string]string{"x-usage-words": "250", "content-type": "application/json"}},
		{id: down, code: 200, headers: map[string]string{"X-Usage-Words": "40"}},
	}
	streamAccessLog(t, s.grpcAddr, batch)
	// up: 250 actual, 150 more; down: 40 actual, 60 back.
	wantState(t, adminAddr, "ann", subjectState{710, 2}, "after the adjustments")
	streamAccessLog(t, s.grpcAddr, batch, batch) // Envoy resending: ignored
	wantState(t, adminAddr, "ann", subjectState{710, 2}, "after duplicate batches")

	unknown := "0190a8f0-1234-7000-8000-000000000000"
	reset := s.decide(t, "ann", "summarize", 5) // 10 tokens, refunded on no response; its call stays
	wantState(t, adminAddr, "ann", subjectState{700, 3}, "after a summarize")
	streamAccessLog(t, s.grpcAddr, []outcome{{id: unknown, code: 503}, {code: 503}, {id: reset, code: 0}})
	wantState(t, adminAddr, "ann", subjectState{710, 3}, "after a reset upstream, an unknown id and an entry without one")

	for _, m := range []struct {
		labels []string
		want   float64
	}{
		{[]string{`outcome="refund"`}, 2},
		{[]string{`outcome="adjust"`}, 2},
		{[]string{`outcome="duplicate"`}, 4},
		{[]string{`outcome="unmatched"`}, 1},
	} {
		if got := metricValue(t, s.httpAddr, "quota_settlements_total", m.labels...); got != m.want {
			t.Errorf("quota_settlements_total%v = %v, want %v", m.labels, got, m.want)
		}
	}
	if got := metricValue(t, s.httpAddr, "quota_settlements_skipped_total", `reason="no_decision"`); got != 1 {
		t.Errorf("quota_settlements_skipped_total{reason=no_decision} = %v, want 1", got)
	}
	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// 4 charges and 4 settlement records, in one intact chain.
	out, errOut, code := runBinary(t, nil, "ledger", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "8 records") || !strings.Contains(out, "intact") {
		t.Errorf("ledger verify: exit %d, %q %q; want 8 records, chain intact", code, out, errOut)
	}
	wantUsage(t, dir, "ann", settledUsage{Calls: 4, Units: 100 + 250 + 40 + 5, Tokens: 290, Refunded: 100 + 60 + 10, Extra: 150})
}

// TestSettlementOwed adjusts a charge up by more than the balance holds:
// the balance stops at zero and the rest is reported as owed.
func TestSettlementOwed(t *testing.T) {
	waitOutsideHourEdge()
	dir := filepath.Join(t.TempDir(), "data")
	adminAddr := freeAddr(t)
	s := startServer(t, settleConfig(t, ""), "--data-dir", dir, "--admin-addr", adminAddr)
	id := s.decide(t, "owen", "translate", 900) // 900 of 1000
	streamAccessLog(t, s.grpcAddr, []outcome{{id: id, code: 200, headers: map[string]string{"x-usage-words": "1500"}}})
	wantState(t, adminAddr, "owen", subjectState{0, 1}, "after an adjustment past the balance")
	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	wantUsage(t, dir, "owen", settledUsage{Calls: 1, Units: 1500, Tokens: 1000, Extra: 600, Owed: 500})
}

// TestSettlementAfterRestart settles a decision made before a restart on
// the same --data-dir (SQLite): the pending decision outlives the process.
// After a graceful stop in batch durability the final flush saved it; after
// SIGKILL (no final flush) in durability sync it was committed with its
// charge and ledger record. Either way the restarted server refunds it
// once, and a second entry is a duplicate.
func TestSettlementAfterRestart(t *testing.T) {
	tests := []struct {
		name string
		args []string
		stop syscall.Signal
	}{
		{name: "graceful, batch", stop: syscall.SIGTERM},
		{name: "crash, sync", args: []string{"--durability", "sync"}, stop: syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			waitOutsideHourEdge()
			dir := filepath.Join(t.TempDir(), "data")
			adminAddr := freeAddr(t)
			args := append([]string{"--data-dir", dir, "--admin-addr", adminAddr}, tt.args...)
			s := startServer(t, settleConfig(t, ""), args...)
			id := s.decide(t, "rita", "translate", 100)
			wantState(t, adminAddr, "rita", subjectState{900, 1}, "before the restart")
			if err := s.stop(t, tt.stop, 15*time.Second); err != nil && tt.stop != syscall.SIGKILL {
				t.Fatalf("%v: %v", tt.stop, err)
			}
			s = startServer(t, settleConfig(t, ""), args...)
			wantState(t, adminAddr, "rita", subjectState{900, 1}, "after the restart")
			for _, when := range []string{"after a 503 logged after the restart", "after the same entry again"} {
				streamAccessLog(t, s.grpcAddr, []outcome{{id: id, code: 503}})
				wantState(t, adminAddr, "rita", subjectState{1000, 0}, when)
			}
			if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			wantUsage(t, dir, "rita", settledUsage{Calls: 1, Units: 100, Refunded: 100})
		})
	}
}

// TestSettlementOnAnotherReplica settles on one replica a decision another
// made, both sharing one Redis. It needs the engine's shared pending
// decisions in Redis (issue #20, engine side).
func TestSettlementOnAnotherReplica(t *testing.T) {
	waitOutsideHourEdge()
	r := startRedis(t)
	cfg := settleConfig(t, r.addr)
	adminA, adminB := freeAddr(t), freeAddr(t)
	a := startServer(t, cfg, "--admin-addr", adminA)
	b := startServer(t, cfg, "--admin-addr", adminB)
	id := a.decide(t, "remy", "translate", 100)
	wantState(t, adminB, "remy", subjectState{900, 1}, "seen from the other replica")
	streamAccessLog(t, b.grpcAddr, []outcome{{id: id, code: 200, headers: map[string]string{"x-usage-words": "30"}}})
	wantState(t, adminA, "remy", subjectState{970, 1}, "after the other replica settled")
	wantState(t, adminB, "remy", subjectState{970, 1}, "on the replica that settled")
	streamAccessLog(t, a.grpcAddr, []outcome{{id: id, code: 200, headers: map[string]string{"x-usage-words": "30"}}})
	wantState(t, adminA, "remy", subjectState{970, 1}, "after the entry came again to the replica that decided")
}

// TestSettlementOwnListener serves the access log service on
// server.access_log.addr, apart from the ext_authz listener.
func TestSettlementOwnListener(t *testing.T) {
	waitOutsideHourEdge()
	alsAddr := freeAddr(t)
	path := settleConfig(t, "")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, fmt.Sprintf("server:\n  access_log: {addr: %q}\n", alsAddr)...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	s := startServer(t, path, "--admin-addr", adminAddr)
	if !strings.Contains(s.stderr.String(), `"access_log":"`+alsAddr+`"`) {
		t.Errorf("the listening log does not name the access log listener %s:\n%s", alsAddr, s.stderr)
	}
	id := s.decide(t, "lou", "translate", 100)
	streamAccessLog(t, alsAddr, []outcome{{id: id, code: 503}})
	wantState(t, adminAddr, "lou", subjectState{1000, 0}, "after a 503 on the access log listener")
	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// TestSIGTERMWithAnOpenAccessLogStream shuts down while Envoy's access log
// stream is open, as it always is: the drain must not wait the grace
// period out for it, and what was sent before is settled.
func TestSIGTERMWithAnOpenAccessLogStream(t *testing.T) {
	waitOutsideHourEdge()
	dir := filepath.Join(t.TempDir(), "data")
	adminAddr := freeAddr(t)
	s := startServer(t, settleConfig(t, ""), "--data-dir", dir, "--admin-addr", adminAddr)
	id := s.decide(t, "sid", "translate", 100)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*accesslogv3.HTTPAccessLogEntry{accessLogEntry(outcome{id: id, code: 503})}}}}
	if err := st.Send(msg); err != nil {
		t.Fatal(err)
	}
	wantStateSoon(t, adminAddr, "sid", subjectState{1000, 0})
	start := time.Now()
	if err := s.stop(t, syscall.SIGTERM, 8*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second || strings.Contains(s.stderr.String(), "grace period ran out") {
		t.Errorf("shutdown took %v with an open access log stream (grace 10s):\n%s", took, s.stderr)
	}
	wantUsage(t, dir, "sid", settledUsage{Calls: 1, Units: 100, Refunded: 100})
}

// wantStateSoon waits up to 5s for subject's state to become want: a
// stream that stays open is settled as its batches arrive.
func wantStateSoon(t *testing.T, adminAddr, subject string, want subjectState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for stateOf(t, adminAddr, subject) != want {
		if time.Now().After(deadline) {
			wantState(t, adminAddr, subject, want, "on an open stream")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
