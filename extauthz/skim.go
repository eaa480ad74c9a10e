package extauthz

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"unicode/utf8"
)

// checkDecode is what the Check handler asks lenientCodec to decode into:
// the CheckRequest, and whether the identity options read the metadata
// context (the jwt_authn payload).
//
// Decoding an Envoy CheckRequest is the largest single cost of a Check
// (a third of the server's CPU in `make bench`): protobuf decodes maps,
// and the Struct maps of metadata_context through reflection. Server reads
// only the source peer, the HTTP request, the context extensions and, for
// the jwt identity source, the metadata context, so the codec decodes only
// those fields of the AttributeContext, and the maps of strings without
// reflection (see decodeCheck). What the server
// decides is the same; a malformed field that it never reads is no longer
// decoded, so it no longer fails the Check.
type checkDecode struct {
	req      *authv3.CheckRequest
	metadata bool // decode AttributeContext.metadata_context too
}

// The field numbers skimCheck walks, from the generated descriptors.
var (
	checkAttributesNum = fieldNum(&authv3.CheckRequest{}, "attributes")
	attrSourceNum      = fieldNum(&authv3.AttributeContext{}, "source")
	attrRequestNum     = fieldNum(&authv3.AttributeContext{}, "request")
	attrExtensionsNum  = fieldNum(&authv3.AttributeContext{}, "context_extensions")
	attrMetadataNum    = fieldNum(&authv3.AttributeContext{}, "metadata_context")
)

func fieldNum(m protov2.Message, name string) protowire.Number {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("extauthz: no field " + name + " in " + string(m.ProtoReflect().Descriptor().FullName()))
	}
	return fd.Number()
}

// The field numbers decodeCheck handles itself, from the generated
// descriptors.
var (
	requestHTTPNum = fieldNum(&authv3.AttributeContext_Request{}, "http")
	httpHeadersNum = fieldNum(&authv3.AttributeContext_HttpRequest{}, "headers")
)

// Map entries' key and value fields.
const (
	entryKeyNum   protowire.Number = 1
	entryValueNum protowire.Number = 2
)

var merge = protov2.UnmarshalOptions{Merge: true}

// decodeCheck decodes the wire-format CheckRequest b into req, which must
// be empty, as protobuf would except in two ways: of the AttributeContext
// it decodes only what Server reads (source, request, context_extensions,
// and metadata_context when metadata is set), and it decodes the two maps
// of strings (the request headers and the context extensions) itself,
// where protobuf goes through reflection for every entry. Header names are
// interned. It returns false when b is not as it expects (malformed, a map
// entry of another shape, invalid UTF-8 in a map, or anything protobuf
// refuses); the caller then resets req and decodes b whole.
func decodeCheck(b []byte, req *authv3.CheckRequest, metadata bool) bool {
	return decodeFields(b, req, func(num protowire.Number, typ protowire.Type, v []byte) (bool, bool) {
		if num != checkAttributesNum || typ != protowire.BytesType {
			return false, true
		}
		if req.Attributes == nil {
			req.Attributes = new(authv3.AttributeContext)
		}
		return true, decodeAttributes(v, req.Attributes, metadata)
	})
}

func decodeAttributes(b []byte, a *authv3.AttributeContext, metadata bool) bool {
	return decodeFields(b, a, func(num protowire.Number, typ protowire.Type, v []byte) (bool, bool) {
		switch {
		case typ != protowire.BytesType:
			return true, true // no field of AttributeContext that Server reads
		case num == attrSourceNum, num == attrMetadataNum && metadata:
			return false, true
		case num == attrRequestNum:
			if a.Request == nil {
				a.Request = new(authv3.AttributeContext_Request)
			}
			return true, decodeFields(v, a.Request, func(num protowire.Number, typ protowire.Type, v []byte) (bool, bool) {
				if num != requestHTTPNum || typ != protowire.BytesType {
					return false, true
				}
				if a.Request.Http == nil {
					a.Request.Http = new(authv3.AttributeContext_HttpRequest)
				}
				return true, decodeHTTP(v, a.Request.Http)
			})
		case num == attrExtensionsNum:
			return true, decodeEntry(v, &a.ContextExtensions, 2, false)
		}
		return true, true // a field Server does not read: skipped
	})
}

func decodeHTTP(b []byte, h *authv3.AttributeContext_HttpRequest) bool {
	hint := countField(b, httpHeadersNum)
	return decodeFields(b, h, func(num protowire.Number, typ protowire.Type, v []byte) (bool, bool) {
		if num != httpHeadersNum || typ != protowire.BytesType {
			return false, true
		}
		return true, decodeEntry(v, &h.Headers, hint, true)
	})
}

// countField returns how many times field num occurs in the wire-format
// message b, counting up to where b is malformed (decodeFields then fails).
func countField(b []byte, num protowire.Number) int {
	count := 0
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(n, typ, b[l:])
		if m < 0 {
			break
		}
		if n == num {
			count++
		}
		b = b[l+m:]
	}
	return count
}

// decodeFields decodes the wire-format message b into m. special sees
// every field first, with the payload of a length-delimited one: when it
// returns handled, it has decoded the field itself (or skipped it); every
// other field is decoded by protobuf, merged into m, a run of them at a
// time, in order. It returns false when b is malformed or special or
// protobuf fails.
func decodeFields(b []byte, m protov2.Message, special func(protowire.Number, protowire.Type, []byte) (handled, ok bool)) bool {
	run := 0 // start of the pending run of fields for protobuf
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return false
		}
		l := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if l < 0 {
			return false
		}
		v := b[i+n : i+n+l]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		handled, ok := special(num, typ, v)
		if !ok {
			return false
		}
		if handled {
			if run < i && merge.Unmarshal(b[run:i], m) != nil {
				return false
			}
			run = i + n + l
		}
		i += n + l
	}
	return run == len(b) || merge.Unmarshal(b[run:], m) == nil
}

// decodeEntry adds the map<string, string> entry b to *m, made with room
// for hint entries when nil. Unknown fields of the entry are skipped, as
// protobuf skips them; a key or value of another wire type, or not valid
// UTF-8, returns false. With intern, a key that is a common header name
// costs no allocation.
func decodeEntry(b []byte, m *map[string]string, hint int, intern bool) bool {
	var key, val []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		switch num {
		case entryKeyNum, entryValueNum:
			if typ != protowire.BytesType {
				return false
			}
			v, l := protowire.ConsumeBytes(b[n:])
			if l < 0 {
				return false
			}
			if num == entryKeyNum {
				key = v
			} else {
				val = v
			}
			b = b[n+l:]
		default:
			l := protowire.ConsumeFieldValue(num, typ, b[n:])
			if l < 0 {
				return false
			}
			b = b[n+l:]
		}
	}
	if !utf8.Valid(key) || !utf8.Valid(val) {
		return false
	}
	if *m == nil {
		*m = make(map[string]string, hint)
	}
	k, ok := "", false
	if intern {
		k, ok = headerNames[string(key)]
	}
	if !ok {
		k = string(key)
	}
	(*m)[k] = string(val)
	return true
}

// headerNames interns the request header names Envoy sends most.
var headerNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		":authority", ":method", ":path", ":scheme", "accept", "accept-encoding", "accept-language",
		"authorization", "content-length", "content-type", "cookie", "traceparent", "tracestate",
		"user-agent", "x-b3-parentspanid", "x-b3-sampled", "x-b3-spanid", "x-b3-traceid",
		"x-envoy-auth-partial-body", "x-envoy-expected-rq-timeout-ms", "x-envoy-external-address",
		"x-envoy-internal", "x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-proto",
		"x-request-id", "x-user-id", "x-api-key", "x-quota-tier", "x-tier", "x-user-tier",
	} {
		m[k] = k
	}
	return m
}()

// unmarshalCheck decodes data into d.req with decodeCheck; when that
// fails, it decodes data whole, as
// lenientCodec decodes any message, so an error or a repair of invalid
// UTF-8 is exactly what it was.
func (c lenientCodec) unmarshalCheck(data mem.BufferSlice, d *checkDecode) error {
	pool := mem.DefaultBufferPool()
	raw := data.MaterializeToBuffer(pool)
	defer raw.Free()
	in := raw.ReadOnlyData()
	if decodeCheck(in, d.req, d.metadata) {
		return nil
	}
	protov2.Reset(d.req)
	return c.Unmarshal(data, d.req)
}
