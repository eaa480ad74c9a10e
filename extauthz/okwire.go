package extauthz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The field numbers okWire writes, from the generated descriptors.
var (
	respStatusNum    = fieldNum(&authv3.CheckResponse{}, "status")
	respOKNum        = fieldNum(&authv3.CheckResponse{}, "ok_response")
	respMetadataNum  = fieldNum(&authv3.CheckResponse{}, "dynamic_metadata")
	okHeadersNum     = fieldNum(&authv3.OkHttpResponse{}, "headers")
	okRemoveNum      = fieldNum(&authv3.OkHttpResponse{}, "headers_to_remove")
	okAddNum         = fieldNum(&authv3.OkHttpResponse{}, "response_headers_to_add")
	optionHeaderNum  = fieldNum(&corev3.HeaderValueOption{}, "header")
	optionActionNum  = fieldNum(&corev3.HeaderValueOption{}, "append_action")
	headerKeyNum     = fieldNum(&corev3.HeaderValue{}, "key")
	headerValueNum   = fieldNum(&corev3.HeaderValue{}, "value")
	statusCodeNum    = fieldNum(&rpcstatus.Status{}, "code")
	overwriteOrAddID = uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
)

// sendResponse is checkResponse for a response that is only sent: the
// gRPC transport's. An allowed verdict, the common case, gets okWire.
func sendResponse(v *Verdict) *authv3.CheckResponse {
	if v.Allowed {
		return okWire(v)
	}
	return checkResponse(v)
}

// okWire is okResponse in wire form: an empty CheckResponse whose unknown
// fields are the encoding of okResponse(v), which protobuf marshals
// verbatim, so Envoy receives the same message. Building and marshaling
// okResponse's two dozen messages (status, options, header values,
// Struct) through reflection cost more than the rest of the response path
// together; this is one buffer, sized first, written once. As with
// metadataStruct, the fields are empty in this process: unmarshal the
// encoding to read them.
func okWire(v *Verdict) *authv3.CheckResponse {
	code := uint64(grpcCode(v))
	status := 0
	if code != 0 {
		status = protowire.SizeTag(statusCodeNum) + protowire.SizeVarint(code)
	}
	ok := headerOptionsSize(okHeadersNum, v.UpstreamHeaders) + headerOptionsSize(okAddNum, v.Headers)
	for _, h := range v.RemoveHeaders {
		ok += protowire.SizeTag(okRemoveNum) + protowire.SizeBytes(len(h))
	}
	var metaBuf [metadataCapacity]byte
	meta := appendMetadata(metaBuf[:0], &v.Metadata)
	size := protowire.SizeTag(respStatusNum) + protowire.SizeBytes(status) +
		protowire.SizeTag(respOKNum) + protowire.SizeBytes(ok) +
		protowire.SizeTag(respMetadataNum) + protowire.SizeBytes(len(meta))

	b := make([]byte, 0, size)
	b = protowire.AppendTag(b, respStatusNum, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(status))
	if code != 0 {
		b = protowire.AppendTag(b, statusCodeNum, protowire.VarintType)
		b = protowire.AppendVarint(b, code)
	}
	b = protowire.AppendTag(b, respOKNum, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ok))
	b = appendHeaderOptions(b, okHeadersNum, v.UpstreamHeaders)
	for _, h := range v.RemoveHeaders {
		b = protowire.AppendTag(b, okRemoveNum, protowire.BytesType)
		b = protowire.AppendString(b, h)
	}
	b = appendHeaderOptions(b, okAddNum, v.Headers)
	b = protowire.AppendTag(b, respMetadataNum, protowire.BytesType)
	b = protowire.AppendBytes(b, meta)

	resp := new(authv3.CheckResponse)
	resp.ProtoReflect().SetUnknown(b)
	return resp
}

// headerValueSize is the encoded size of h as a HeaderValue, whose empty
// strings protobuf omits.
func headerValueSize(h Header) int {
	n := 0
	if h.Key != "" {
		n += protowire.SizeTag(headerKeyNum) + protowire.SizeBytes(len(h.Key))
	}
	if h.Value != "" {
		n += protowire.SizeTag(headerValueNum) + protowire.SizeBytes(len(h.Value))
	}
	return n
}

// headerOptionSize is the encoded size of h as the HeaderValueOption that
// headerOptions makes of it.
func headerOptionSize(h Header) int {
	return protowire.SizeTag(optionHeaderNum) + protowire.SizeBytes(headerValueSize(h)) +
		protowire.SizeTag(optionActionNum) + protowire.SizeVarint(overwriteOrAddID)
}

// headerOptionsSize is the encoded size of hs as repeated field num of
// HeaderValueOptions.
func headerOptionsSize(num protowire.Number, hs []Header) int {
	n := 0
	for _, h := range hs {
		n += protowire.SizeTag(num) + protowire.SizeBytes(headerOptionSize(h))
	}
	return n
}

// appendHeaderOptions appends hs as repeated field num of the
// HeaderValueOptions that headerOptions makes of them.
func appendHeaderOptions(b []byte, num protowire.Number, hs []Header) []byte {
	for _, h := range hs {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerOptionSize(h)))
		b = protowire.AppendTag(b, optionHeaderNum, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerValueSize(h)))
		if h.Key != "" {
			b = protowire.AppendTag(b, headerKeyNum, protowire.BytesType)
			b = protowire.AppendString(b, h.Key)
		}
		if h.Value != "" {
			b = protowire.AppendTag(b, headerValueNum, protowire.BytesType)
			b = protowire.AppendString(b, h.Value)
		}
		b = protowire.AppendTag(b, optionActionNum, protowire.VarintType)
		b = protowire.AppendVarint(b, overwriteOrAddID)
	}
	return b
}
