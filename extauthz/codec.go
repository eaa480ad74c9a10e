package extauthz

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// lenientCodec is the gRPC codec of quotagate's server. It is the standard
// protobuf codec, except that a message whose string fields are not valid
// UTF-8 (a body cut mid-character, a header with obs-text bytes, an older
// Envoy) is still decoded instead of failing with codes.Internal, so that
// every such Check gets a decision:
//
//   - the body (AttributeContext.HttpRequest.body) is moved, byte for byte,
//     to raw_body, which Server reads when body is empty, so its words and
//     size are priced exactly;
//   - every other string has each invalid byte sequence replaced with
//     U+FFFD (strings.ToValidUTF8), so a header or path that was not UTF-8
//     is matched and logged as text.
//
// Valid messages take the standard path and cost nothing more.
type lenientCodec struct{ std encoding.CodecV2 }

func newLenientCodec() encoding.CodecV2 {
	return lenientCodec{std: encoding.GetCodecV2(proto.Name)}
}

func (c lenientCodec) Name() string { return proto.Name }

// Marshal encodes v as protobuf would. A CheckResponse made by okWire,
// whose only content is its unknown fields, is already its own encoding:
// those bytes are sent as they are, where protobuf would copy them into a
// second buffer (one allocation and copy less for every allowed Check).
func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b := wireOnly(v); b != nil {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.std.Marshal(v)
}

// wireOnly returns the encoding of v when v is a CheckResponse with no
// field set but unknown ones, which protobuf encodes verbatim; else nil.
func wireOnly(v any) []byte {
	r, ok := v.(*authv3.CheckResponse)
	if !ok || r == nil || r.Status != nil || r.HttpResponse != nil || r.DynamicMetadata != nil {
		return nil
	}
	return r.ProtoReflect().GetUnknown()
}

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if d, ok := v.(*checkDecode); ok {
		return c.unmarshalCheck(data, d)
	}
	if d, ok := v.(*alsDecode); ok {
		return unmarshalALS(data, d)
	}
	err := c.std.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	buf := data.Materialize()
	fixed, changed, rerr := relaxUTF8(nil, buf, m.ProtoReflect().Descriptor(), 0)
	if rerr != nil || !changed {
		return err
	}
	protov2.Reset(m)
	if err2 := protov2.Unmarshal(fixed, m); err2 != nil {
		return fmt.Errorf("extauthz: decode %s after repairing invalid UTF-8: %w (first error: %v)", m.ProtoReflect().Descriptor().FullName(), err2, err)
	}
	return nil
}

// maxRelaxDepth bounds the nesting relaxUTF8 follows, as protobuf's own
// decoder does.
const maxRelaxDepth = 100

var errRelaxDepth = errors.New("extauthz: message nested too deeply")

// httpRequest is the message whose body field moves to raw_body.
var httpRequest = (&authv3.AttributeContext_HttpRequest{}).ProtoReflect().Descriptor()

// relaxUTF8 appends to out the wire-format message b (of type md) with the
// invalid UTF-8 of its string fields repaired as lenientCodec describes,
// recursing into message fields. changed reports whether anything was
// repaired. It returns an error only for a malformed or too deeply nested
// message.
func relaxUTF8(out, b []byte, md protoreflect.MessageDescriptor, depth int) (_ []byte, changed bool, err error) {
	if depth > maxRelaxDepth {
		return nil, false, errRelaxDepth
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, protowire.ParseError(n)
		}
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, false, protowire.ParseError(m)
			}
			out = append(out, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false, protowire.ParseError(m)
		}
		fd := md.Fields().ByNumber(num)
		switch {
		case fd == nil:
			out = append(out, b[:n+m]...)
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			changed = true
			if md.FullName() == httpRequest.FullName() && fd.Name() == "body" {
				raw := md.Fields().ByName("raw_body")
				out = protowire.AppendTag(out, raw.Number(), protowire.BytesType)
				out = protowire.AppendBytes(out, v)
				break
			}
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendString(out, strings.ToValidUTF8(string(v), "\uFFFD"))
		case fd.Kind() == protoreflect.MessageKind:
			inner, ch, err := relaxUTF8(nil, v, fd.Message(), depth+1)
			if err != nil {
				return nil, false, err
			}
			changed = changed || ch
			out = protowire.AppendTag(out, num, protowire.BytesType)
			out = protowire.AppendBytes(out, inner)
		default:
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, changed, nil
}
