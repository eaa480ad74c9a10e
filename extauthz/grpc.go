package extauthz

import (
	"context"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// headerPartialBody is set by Envoy to "true" when with_request_body cut
// the body at max_request_bytes (allow_partial_message).
const headerPartialBody = "x-envoy-auth-partial-body"

// Check implements envoy.service.auth.v3.Authorization. It never returns an
// error: every outcome, including "could not decide", is a CheckResponse.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.respond(ctx, s.pol.Load(), req, checkResponse), nil
}

// check is Check for the gRPC transport, under p, the policy the request
// was decoded for. The response is only marshaled, so an allowed one is
// built in wire form (sendResponse).
func (s *Server) check(ctx context.Context, p *policy, req *authv3.CheckRequest) *authv3.CheckResponse {
	return s.respond(ctx, p, req, sendResponse)
}

// respond decides req under p and answers with the response that build
// makes of the verdict.
func (s *Server) respond(ctx context.Context, p *policy, req *authv3.CheckRequest, build func(*Verdict) *authv3.CheckResponse) *authv3.CheckResponse {
	c := getCall()
	defer putCall(c)
	c.in = inputFromCheck(&p.Identity, req)
	s.decideInto(ctx, p, &c.in, &c.v)
	return build(&c.v)
}

// inputFromCheck maps Envoy's AttributeContext onto an Input, reading the
// JWT payload as id locates it.
func inputFromCheck(id *IdentityOptions, req *authv3.CheckRequest) Input {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	in := Input{
		Method:            h.GetMethod(),
		Path:              h.GetPath(),
		Host:              h.GetHost(),
		Scheme:            h.GetScheme(),
		Headers:           h.GetHeaders(),
		Body:              h.GetBody(),
		ContentLength:     -1,
		ContextExtensions: attrs.GetContextExtensions(),
		Principal:         attrs.GetSource().GetPrincipal(),
		RequestID:         h.GetId(),
	}
	if in.Headers == nil && h.GetHeaderMap() != nil {
		in.Headers = headerMap(h.GetHeaderMap())
	}
	if in.Body == "" && len(h.GetRawBody()) > 0 {
		in.Body = string(h.GetRawBody())
	}
	in.BodyTruncated = in.Headers[headerPartialBody] == "true"
	if cl, err := strconv.ParseInt(in.Headers["content-length"], 10, 64); err == nil && cl >= 0 {
		in.ContentLength = cl
	}
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		in.SourceAddress, in.SourcePort = sa.GetAddress(), sa.GetPortValue()
	}
	if id.usesJWT() {
		fm := attrs.GetMetadataContext().GetFilterMetadata()[id.JWTFilter]
		if payload := fm.GetFields()[id.JWTPayloadKey].GetStructValue(); payload != nil {
			in.JWT = id.claimsFromStruct(payload)
		}
	}
	return in
}

// claimsFromStruct reads the configured claims straight from the protobuf
// payload that jwt_authn wrote, without converting all of it. Roles may be
// a list of strings or a space-separated string, as in OAuth's "scope".
// A payload without the subject claim yields no claims.
func (o *IdentityOptions) claimsFromStruct(p *structpb.Struct) Claims {
	fields := p.GetFields()
	c := Claims{Subject: fields[o.SubjectClaim].GetStringValue()}
	if c.Subject == "" {
		return Claims{}
	}
	if o.TierClaim != "" {
		c.Tier = fields[o.TierClaim].GetStringValue()
	}
	if o.TeamClaim != "" {
		c.Team = fields[o.TeamClaim].GetStringValue()
	}
	if o.RolesClaim != "" {
		c.Roles = roles(fields[o.RolesClaim])
	}
	return c
}

// roles reads a roles claim: a space-separated string or a list of
// strings, whose empty and non-string elements are skipped.
func roles(v *structpb.Value) []string {
	if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
		return strings.Fields(s.StringValue)
	}
	var out []string
	for _, e := range v.GetListValue().GetValues() {
		if s := e.GetStringValue(); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (o *IdentityOptions) usesJWT() bool {
	for _, src := range o.Sources {
		if src == SourceJWT {
			return true
		}
	}
	return false
}

// headerMap flattens Envoy's HeaderMap (sent when encode_raw_headers is
// on) into a map, joining repeated headers with a comma.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	m := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		val := hv.GetValue()
		if val == "" && len(hv.GetRawValue()) > 0 {
			val = string(hv.GetRawValue())
		}
		if prev, ok := m[hv.GetKey()]; ok {
			val = prev + "," + val
		}
		m[hv.GetKey()] = val
	}
	return m
}

// checkResponse maps a Verdict onto a CheckResponse.
func checkResponse(v *Verdict) *authv3.CheckResponse {
	if v.Allowed {
		return okResponse(v)
	}
	resp := &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(grpcCode(v)), Message: v.Code},
		DynamicMetadata: metadataStruct(&v.Metadata),
	}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(v.Status)},
		Headers: headerOptions(v.Headers),
		Body:    string(v.Body),
	}}
	return resp
}

// okMessages are the messages of an OK CheckResponse, allocated together.
type okMessages struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	oneof  authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
}

// okResponse is checkResponse for an allowed verdict, the common case: its
// messages, and the upstream and client headers, are allocated in blocks.
func okResponse(v *Verdict) *authv3.CheckResponse {
	m := new(okMessages)
	m.status.Code = int32(grpcCode(v))
	m.ok.HeadersToRemove = v.RemoveHeaders
	both := joinedHeaderOptions(v.UpstreamHeaders, v.Headers)
	m.ok.Headers = both[:len(v.UpstreamHeaders):len(v.UpstreamHeaders)]
	m.ok.ResponseHeadersToAdd = both[len(v.UpstreamHeaders):]
	if len(m.ok.Headers) == 0 {
		m.ok.Headers = nil
	}
	if len(m.ok.ResponseHeadersToAdd) == 0 {
		m.ok.ResponseHeadersToAdd = nil
	}
	m.oneof.OkResponse = &m.ok
	m.resp.Status = &m.status
	m.resp.HttpResponse = &m.oneof
	m.resp.DynamicMetadata = metadataStruct(&v.Metadata)
	return &m.resp
}

// grpcCode is the google.rpc.Status code that matches the verdict.
func grpcCode(v *Verdict) codes.Code {
	switch {
	case v.Allowed:
		return codes.OK
	case v.Status == 401:
		return codes.Unauthenticated
	case v.Status == 429 || v.Code == CodeInsufficientBalance:
		return codes.ResourceExhausted
	case v.Status == 503:
		return codes.Unavailable
	}
	return codes.PermissionDenied
}

// headerOptions converts headers to HeaderValueOptions that overwrite any
// existing value, so a client cannot pre-set a header quotagate sets.
func headerOptions(hs []Header) []*corev3.HeaderValueOption {
	return joinedHeaderOptions(hs, nil)
}

// joinedHeaderOptions is headerOptions for first followed by second, with
// the messages of both allocated in three blocks rather than two per
// header: okResponse splits the result into the upstream and the client
// headers.
func joinedHeaderOptions(first, second []Header) []*corev3.HeaderValueOption {
	n := len(first) + len(second)
	if n == 0 {
		return nil
	}
	ptrs := make([]*corev3.HeaderValueOption, n)
	opts := make([]corev3.HeaderValueOption, n)
	vals := make([]corev3.HeaderValue, n)
	for i := range n {
		h := &vals[i]
		if i < len(first) {
			h.Key, h.Value = first[i].Key, first[i].Value
		} else {
			h.Key, h.Value = second[i-len(first)].Key, second[i-len(first)].Value
		}
		opts[i].Header = h
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ptrs[i] = &opts[i]
	}
	return ptrs
}
