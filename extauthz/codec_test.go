package extauthz

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends a []byte as the message as is (a hand-encoded
// CheckRequest) and decodes replies as protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// undecidedLog records OnUndecided calls.
type undecidedLog struct {
	mu      sync.Mutex
	reasons []string
}

func (u *undecidedLog) add(_ context.Context, reason string, _ error) {
	u.mu.Lock()
	u.reasons = append(u.reasons, reason)
	u.mu.Unlock()
}

func (u *undecidedLog) all() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.reasons...)
}

// startLoopbackGRPC serves s on a real TCP port of 127.0.0.1.
func startLoopbackGRPC(t *testing.T, s *Server, o GRPCOptions) *grpc.ClientConn {
	t.Helper()
	gs, _, err := s.NewGRPCServer(o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return conn
}

// encodeWith marshals req, in which each marker stands for bytes of the
// same length, then swaps the bytes in: protobuf's encoder would refuse
// invalid UTF-8, so the invalid strings are put in by hand.
func encodeWith(t *testing.T, req *authv3.CheckRequest, swaps map[string]string) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	for marker, bad := range swaps {
		if len(marker) != len(bad) || bytes.Count(b, []byte(marker)) != 1 {
			t.Fatalf("marker %q: must occur once and be as long as %q", marker, bad)
		}
		b = bytes.Replace(b, []byte(marker), []byte(bad), 1)
	}
	return b
}

func checkRequest(user, path, action, body string, raw []byte) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, Body: body, RawBody: raw,
		Headers: map[string]string{"x-user-id": user}}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h},
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{}}}
	if action != "" {
		attrs.ContextExtensions = map[string]string{"action": action}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func TestInvalidUTF8IsDecided(t *testing.T) {
	c := &clock{now: t0}
	s := newTestServer(t, c, Policy{Routes: testRoutes})
	var undecided undecidedLog
	conn := startLoopbackGRPC(t, s, GRPCOptions{MaxReceiveBytes: 1 << 20, OnUndecided: undecided.add})
	words := strings.Repeat("bonjour ", 3000) // 3000 words: translate costs 15
	cut := "\xe7\xbf\xbb\xe8\xa8"             // 翻 then the first two bytes of 訳: cut mid-character
	invoke := func(msg []byte) (*authv3.CheckResponse, error) {
		var resp authv3.CheckResponse
		err := conn.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", msg, &resp, grpc.ForceCodecV2(rawCodec{}))
		return &resp, err
	}
	// The reference: the same bytes sent as raw_body, which needs no UTF-8.
	rawCost := func(body string) float64 {
		ref, err := invoke(encodeWith(t, checkRequest("sam", "/v1/translate", "translate", "", []byte(body)), nil))
		if err != nil || ref.GetStatus().GetCode() != 0 {
			t.Fatalf("raw_body reference: %v %v", ref, err)
		}
		return ref.GetDynamicMetadata().GetFields()["cost"].GetNumberValue()
	}
	refCost := rawCost(words + cut)
	if refCost != 16 { // 3000 words and 翻: ceil(3001 × 5 / 1000)
		t.Fatalf("raw_body reference cost %v, want 16", refCost)
	}
	tests := []struct {
		name     string
		req      *authv3.CheckRequest
		swaps    map[string]string
		wantCode codes.Code
		wantCost float64
	}{
		{name: "body cut mid-character", req: checkRequest("sam", "/v1/translate", "translate", words+"MARKR", nil),
			swaps: map[string]string{"MARKR": cut}, wantCost: refCost},
		{name: "lone continuation bytes in the body", req: checkRequest("sam", "/v1/translate", "translate", words+"MK", nil),
			swaps: map[string]string{"MK": "\x80\xbf"}, wantCost: rawCost(words + "\x80\xbf")},
		{name: "identity header", req: checkRequest("samXX", "/v1/translate", "translate", "a b c", nil),
			swaps: map[string]string{"samXX": "sam\xff\xfe"}, wantCost: 1},
		{name: "path", req: checkRequest("sam", "/v1/translate/MRK", "", "a b c", nil),
			swaps: map[string]string{"MRK": "\xc3\x28\xa0"}, wantCost: 1},
		// "translate\uFFFD" is no configured action: decided, as unknown_action.
		{name: "context extension", req: checkRequest("sam", "/v1/translate", "translateQ", "a b c", nil),
			swaps: map[string]string{"translateQ": "translate\xff"}, wantCode: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := invoke(encodeWith(t, tt.req, tt.swaps))
			if err != nil {
				t.Fatalf("Check = %v, want a decision", err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tt.wantCode {
				t.Errorf("decision %v, want %v: %v", got, tt.wantCode, resp)
			}
			if cost := resp.GetDynamicMetadata().GetFields()["cost"].GetNumberValue(); cost != tt.wantCost {
				t.Errorf("cost %v, want %v", cost, tt.wantCost)
			}
			if resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue() == "" {
				t.Errorf("no decision id: %v", resp)
			}
		})
	}
	if u := undecided.all(); len(u) != 0 {
		t.Errorf("undecided RPCs %q, want none", u)
	}
}

func TestUndecidedRPCsAreCounted(t *testing.T) {
	c := &clock{now: t0}
	s := newTestServer(t, c, Policy{})
	var undecided undecidedLog
	conn := startLoopbackGRPC(t, s, GRPCOptions{MaxReceiveBytes: 256 << 10, OnUndecided: undecided.add})
	tests := []struct {
		name       string
		msg        []byte
		wantCode   codes.Code
		wantReason string
	}{
		{name: "under the limit is decided", msg: encodeWith(t, checkRequest("sam", "/", "", strings.Repeat("a ", 100<<10), nil), nil), wantCode: codes.OK},
		{name: "over the limit", msg: encodeWith(t, checkRequest("sam", "/", "", strings.Repeat("a ", 200<<10), nil), nil),
			wantCode: codes.ResourceExhausted, wantReason: "too_large"},
		{name: "not protobuf", msg: []byte{0xff, 0xff, 0xff}, wantCode: codes.Internal, wantReason: "undecodable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(undecided.all())
			var resp authv3.CheckResponse
			err := conn.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", tt.msg, &resp, grpc.ForceCodecV2(rawCodec{}))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Check = %v, want %v", err, tt.wantCode)
			}
			deadline := time.Now().Add(5 * time.Second)
			for tt.wantReason != "" && len(undecided.all()) == before && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			u := undecided.all()[before:]
			if tt.wantReason == "" && len(u) != 0 || tt.wantReason != "" && (len(u) != 1 || u[0] != tt.wantReason) {
				t.Errorf("undecided %q, want %q", u, tt.wantReason)
			}
		})
	}
}
