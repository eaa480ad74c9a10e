package main

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

type spanSink struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (s *spanSink) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans = append(s.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func TestServeExportsRejectionSpans(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := &spanSink{}
	osrv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(osrv, sink)
	go osrv.Serve(lis)
	defer osrv.Stop()

	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(),
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_METRICS_EXPORTER":       "none",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr logtest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	}()
	addrs := regexp.MustCompile(`gRPC on (\S+), health and metrics on http://(\S+)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		m = addrs.FindStringSubmatch(stdout.String())
	}
	if m == nil {
		t.Fatalf("server did not start: %s %s", stdout.String(), stderr.String())
	}
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	denied := 0
	for range 11 {
		cctx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+parentID+"-00")
		resp, err := client.Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/v1/items?page=2", Host: "api", Headers: map[string]string{"x-user-id": "demo-free"},
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDeniedResponse() != nil {
			denied++
		}
	}
	res, err := http.Get("http://" + m[2] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if denied == 0 {
		t.Fatalf("no Check was denied")
	}
	if !strings.Contains(string(metrics), `quota_decisions_total{`) || !strings.Contains(string(metrics), `decision="deny"`) {
		t.Errorf("/metrics lacks the decision counter:\n%s", metrics)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.spans) != denied {
		t.Fatalf("%d spans exported for %d rejections (allows under Envoy's unsampled parent are dropped)", len(sink.spans), denied)
	}
	sp := sink.spans[0]
	if hex.EncodeToString(sp.GetTraceId()) != traceID || hex.EncodeToString(sp.GetParentSpanId()) != parentID {
		t.Errorf("span trace/parent = %x/%x, want Envoy's", sp.GetTraceId(), sp.GetParentSpanId())
	}
	if !strings.Contains(stderr.String(), `"trace_id":"`+traceID+`"`) || !strings.Contains(stderr.String(), `"msg":"quota rejected"`) {
		t.Errorf("no rejection log line with the trace id:\n%s", stderr.String())
	}
}
