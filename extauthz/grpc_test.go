package extauthz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// envoyCheck builds a CheckRequest shaped as Envoy's ext_authz filter sends
// it with with_request_body, jwt_authn's payload_in_metadata and
// include_peer_certificate.
func envoyCheck(body string, headers map[string]string, ext map[string]string, jwt map[string]any) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "api.example.com", ":method": "POST", ":path": "/v1/translate?lang=fr", ":scheme": "https",
		"content-type": "application/json", "x-request-id": "7c2b0f8e-5a59-4f3e-9d36-1a1b2c3d4e5f",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for k, v := range headers {
		h[k] = v
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}},
			Principal: "spiffe://cluster.local/ns/default/sa/frontend",
		},
		Destination: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.2", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8443}}}},
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "12345", Method: "POST", Path: "/v1/translate?lang=fr", Host: "api.example.com", Scheme: "https",
			Protocol: "HTTP/2", Headers: h, Body: body, Size: int64(len(body)),
		}},
		ContextExtensions: ext,
	}}
	if jwt != nil {
		payload, err := structpb.NewStruct(jwt)
		if err != nil {
			panic(err)
		}
		req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.filters.http.jwt_authn": {Fields: map[string]*structpb.Value{"jwt_payload": structpb.NewStructValue(payload)}},
		}}
	}
	return req
}

func TestInputFromCheck(t *testing.T) {
	p := testPolicy(t, Policy{Identity: IdentityOptions{Sources: []Source{SourceJWT, SourceMTLS}}})
	req := envoyCheck("hello world", map[string]string{"content-length": "400", headerPartialBody: "true"},
		map[string]string{"action": "translate"}, map[string]any{"sub": "alice", "tier": "gold"})
	in := inputFromCheck(&p.Identity, req)
	if in.Method != "POST" || in.Path != "/v1/translate?lang=fr" || in.Host != "api.example.com" || in.Scheme != "https" {
		t.Errorf("request line = %s %s %s %s", in.Method, in.Scheme, in.Host, in.Path)
	}
	if in.Body != "hello world" || !in.BodyTruncated || in.ContentLength != 400 {
		t.Errorf("body %q truncated %v length %d", in.Body, in.BodyTruncated, in.ContentLength)
	}
	if in.SourceAddress != "10.0.0.7" || in.SourcePort != 51234 || in.Principal != "spiffe://cluster.local/ns/default/sa/frontend" {
		t.Errorf("peer = %s %s", in.SourceAddress, in.Principal)
	}
	if in.JWT.Subject != "alice" || in.ContextExtensions["action"] != "translate" || in.RequestID != "12345" {
		t.Errorf("jwt %v ext %v id %s", in.JWT, in.ContextExtensions, in.RequestID)
	}
}

func TestInputFromCheckHeaderMap(t *testing.T) {
	p := testPolicy(t, Policy{})
	req := envoyCheck("", nil, nil, nil)
	http := req.Attributes.Request.Http
	http.Headers = nil
	http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-user-id", RawValue: []byte("bob")}, {Key: "accept", Value: "a"}, {Key: "accept", Value: "b"},
	}}
	in := inputFromCheck(&p.Identity, req)
	if in.Headers["x-user-id"] != "bob" || in.Headers["accept"] != "a,b" {
		t.Errorf("headers = %v", in.Headers)
	}
	if in.ContentLength != -1 || in.BodyTruncated {
		t.Errorf("length %d truncated %v", in.ContentLength, in.BodyTruncated)
	}
}

func TestCheckResponse(t *testing.T) {
	p := testPolicy(t, Policy{StripHeaders: []string{"x-tier"}})
	allowed := Verdict{Decision: engine.Decision{ID: decisionID, Allowed: true, Tier: "standard", Cost: 3, Action: "translate"}}
	p.allow(t0, &Input{Headers: map[string]string{"x-tier": "enterprise"}}, &allowed)
	denied := Verdict{Decision: engine.Decision{ID: decisionID, Reason: engine.ReasonWindowExceeded, Tier: "freemium", Binding: hourBinding(10, 10), HasBinding: true}}
	p.deny(t0, &denied)

	tests := []struct {
		name     string
		v        Verdict
		wantCode codes.Code
	}{
		{name: "allowed", v: allowed, wantCode: codes.OK},
		{name: "window", v: denied, wantCode: codes.ResourceExhausted},
		{name: "balance", v: Verdict{Status: 402, Code: CodeInsufficientBalance}, wantCode: codes.ResourceExhausted},
		{name: "balance at configured status", v: Verdict{Status: 429, Code: CodeInsufficientBalance}, wantCode: codes.ResourceExhausted},
		{name: "feature", v: Verdict{Status: 403, Code: CodeFeatureNotInPlan}, wantCode: codes.PermissionDenied},
		{name: "no identity", v: Verdict{Status: 401, Code: CodeUnauthenticated}, wantCode: codes.Unauthenticated},
		{name: "shed", v: Verdict{Status: 503, Code: CodeOverloaded}, wantCode: codes.Unavailable},
		{name: "length", v: Verdict{Status: 411, Code: CodeLengthRequired}, wantCode: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := checkResponse(&tt.v)
			if got := codes.Code(resp.GetStatus().GetCode()); got != tt.wantCode {
				t.Errorf("grpc code = %v, want %v", got, tt.wantCode)
			}
			if tt.v.Allowed {
				ok := resp.GetOkResponse()
				if ok == nil || len(ok.GetResponseHeadersToAdd()) != len(tt.v.Headers) || len(ok.GetHeaders()) != len(tt.v.UpstreamHeaders) {
					t.Fatalf("ok response = %v", ok)
				}
				if got := ok.GetHeadersToRemove(); len(got) != 1 || got[0] != "x-tier" {
					t.Errorf("headers_to_remove = %v", got)
				}
				for _, h := range ok.GetHeaders() {
					if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
						t.Errorf("upstream header %s appends instead of overwriting", h.GetHeader().GetKey())
					}
				}
				return
			}
			dr := resp.GetDeniedResponse()
			if dr == nil || int(dr.GetStatus().GetCode()) != tt.v.Status || dr.GetBody() != string(tt.v.Body) {
				t.Fatalf("denied response = %v", dr)
			}
		})
	}
	md := sentMetadata(t, checkResponse(&allowed).GetDynamicMetadata())
	if md["decision_id"] != decisionID.String() || md["tier"] != "standard" || md["cost"] != float64(3) || md["reason"] != "ok" || md["action"] != "translate" {
		t.Errorf("dynamic metadata = %v", md)
	}
}
