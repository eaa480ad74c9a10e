package noop

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestServerAnswersOKOnLoopback(t *testing.T) {
	for _, opts := range []struct {
		name string
		opts Options
	}{
		{name: "tuned", opts: Options{}},
		{name: "plain", opts: Options{Plain: true, StreamWorkers: 8}},
	} {
		t.Run(opts.name, func(t *testing.T) { testServerAnswersOK(t, opts.opts) })
	}
}

func TestPlainServesWithGRPCDefaults(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want int // server options passed to grpc.NewServer
	}{
		{name: "plain ignores the tuning", opts: Options{Plain: true, StreamWorkers: 8, MaxConcurrentStreams: 7}, want: 0},
		{name: "tuned with stream workers", opts: Options{}, want: 5},
		{name: "tuned, a goroutine per stream", opts: Options{StreamWorkers: -1}, want: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sopts, err := tt.opts.serverOptions()
			if err != nil {
				t.Fatal(err)
			}
			if got := len(sopts); got != tt.want {
				t.Errorf("%d server options, want %d", got, tt.want)
			}
		})
	}
}

func testServerAnswersOK(t *testing.T, opts Options) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewGRPCServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx := context.Background()

	tests := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{name: "empty request", req: &authv3.CheckRequest{}},
		{name: "request with attributes", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: map[string]string{"action": "translate"},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/v1/translate", Body: "hello world",
			}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
				t.Errorf("response %v, want status OK with an OkHttpResponse", resp)
			}
		})
	}
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", h.GetStatus(), err)
	}
}

func BenchmarkCheck(b *testing.B) {
	var s Server
	req := &authv3.CheckRequest{}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
