package extauthz

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// fullEnvoyCheck is envoyCheck with every AttributeContext field Envoy may
// send that Server does not read: TLS session, route metadata, and the
// jwt_authn payload in the metadata context.
func fullEnvoyCheck(body string) *authv3.CheckRequest {
	req := envoyCheck(body, map[string]string{"x-user-id": "u1", "content-length": "42"},
		map[string]string{"action": "translate"}, map[string]any{"sub": "jwt-user", "iss": "https://auth.example.com/", "exp": 1.7e9})
	a := req.Attributes
	a.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "api.example.com"}
	a.RouteMetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"quotagate": {Fields: map[string]*structpb.Value{"tier": structpb.NewStringValue("x")}}}}
	a.Request.Time = nil
	return req
}

// skimmedWant is what a skimmed decode of full must equal: full without
// the AttributeContext fields skimCheck leaves out.
func skimmedWant(full *authv3.CheckRequest, metadata bool) *authv3.CheckRequest {
	want := proto.Clone(full).(*authv3.CheckRequest)
	if a := want.Attributes; a != nil {
		a.Destination, a.TlsSession, a.RouteMetadataContext = nil, nil, nil
		if !metadata {
			a.MetadataContext = nil
		}
		a.ProtoReflect().SetUnknown(nil)
	}
	return want
}

// checkSkim asserts decodeCheck's contract on the wire message b: when b
// decodes whole and decodeCheck succeeds, it decoded what the whole
// message has, without the fields left out. With mustDecode, decodeCheck
// must succeed (the fast path is taken).
func checkSkim(t *testing.T, b []byte, mustDecode bool) {
	t.Helper()
	var full authv3.CheckRequest
	fullErr := proto.Unmarshal(b, &full)
	for _, metadata := range []bool{false, true} {
		var got authv3.CheckRequest
		ok := decodeCheck(b, &got, metadata)
		if mustDecode && !ok {
			t.Fatalf("decodeCheck(metadata=%v) refused %x", metadata, b)
		}
		if !ok || fullErr != nil {
			continue
		}
		if want := skimmedWant(&full, metadata); !proto.Equal(&got, want) {
			t.Fatalf("decodeCheck (metadata=%v) decoded\n%v\nwant\n%v", metadata, &got, want)
		}
	}
}

func TestDecodeCheckKeepsWhatServerReads(t *testing.T) {
	full := fullEnvoyCheck(strings.Repeat("word ", 300))
	wire, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	twice := append(append([]byte{}, wire...), wire...) // attributes twice: merged
	withUnknown := protowire.AppendTag(append([]byte{}, wire...), 99, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 7)
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "Envoy-shaped", b: wire},
		{name: "empty", b: nil},
		{name: "attributes twice", b: twice},
		{name: "unknown top-level field", b: withUnknown},
		{name: "attributes with the wrong wire type", b: protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)},
		{name: "header entries with unknown fields, no key, repeated", b: withEntries(wire)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkSkim(t, tt.b, true) })
	}
}

func TestDecodeCheckRefusesMalformed(t *testing.T) {
	wire, err := proto.Marshal(fullEnvoyCheck("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{name: "cut mid-message", b: wire[:len(wire)/2]},
		{name: "bad tag", b: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{name: "attributes longer than the message", b: protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), 100)},
		{name: "malformed inside attributes", b: protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0x22, 0x7f})},
		{name: "header value not UTF-8", b: withHeaderEntry(wire, entry("x-a", "caf\xc3"))},
		{name: "header key of another wire type", b: withHeaderEntry(wire, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if decodeCheck(tt.b, new(authv3.CheckRequest), false) {
				t.Errorf("decodeCheck accepted %x", tt.b)
			}
		})
	}
}

// TestCodecDecodesChecksAsTheServerReadsThem runs the codec path with and
// without the jwt identity source: the decision (who is charged) is the
// same as from the whole message, and the metadata context is decoded
// exactly when it is read.
func TestCodecDecodesChecksAsTheServerReadsThem(t *testing.T) {
	tests := []struct {
		name     string
		sources  []Source
		metadata bool
		subject  string
	}{
		{name: "header identity", sources: []Source{SourceHeader}, subject: "u1"},
		{name: "jwt identity reads the metadata", sources: []Source{SourceJWT, SourceHeader}, metadata: true, subject: "jwt-user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, err := engine.New(testEngineRules(), engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewServer(eng, Options{}, Policy{Identity: IdentityOptions{Sources: tt.sources, HeaderTrusted: true}})
			if err != nil {
				t.Fatal(err)
			}
			full := fullEnvoyCheck("hello world")
			wire, err := proto.Marshal(full)
			if err != nil {
				t.Fatal(err)
			}
			id := &s.pol.Load().Identity
			d := &checkDecode{req: new(authv3.CheckRequest), metadata: id.usesJWT()}
			if err := newLenientCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, d); err != nil {
				t.Fatal(err)
			}
			if d.metadata != tt.metadata || (d.req.GetAttributes().GetMetadataContext() != nil) != tt.metadata {
				t.Errorf("metadata decoded = %v, want %v", d.req.GetAttributes().GetMetadataContext() != nil, tt.metadata)
			}
			if d.req.GetAttributes().GetDestination() != nil {
				t.Error("destination decoded; the server never reads it")
			}
			got := inputFromCheck(id, d.req)
			want := inputFromCheck(id, full)
			if got.Principal != want.Principal || got.SourceAddress != want.SourceAddress || got.Body != want.Body ||
				got.Path != want.Path || len(got.Headers) != len(want.Headers) || got.JWT.Subject != want.JWT.Subject {
				t.Errorf("input from the skimmed request %+v differs from the whole one's %+v", got, want)
			}
			resp, err := s.Check(context.Background(), d.req)
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("Check = %v, %v; want allowed", resp, err)
			}
			if got := inputFromCheck(id, d.req); got.JWT.Subject != "" && got.JWT.Subject != tt.subject {
				t.Errorf("jwt subject %q, want %q", got.JWT.Subject, tt.subject)
			}
		})
	}
}

// TestCodecSkimKeepsTheUTF8Repair: a path that is not valid UTF-8 is still
// repaired, through the whole-message fallback, and the rest decoded.
func TestCodecSkimKeepsTheUTF8Repair(t *testing.T) {
	wire, err := proto.Marshal(fullEnvoyCheck("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	// Append a second attributes with an invalid path, written by hand:
	// proto.Marshal refuses invalid UTF-8.
	path := fieldNum(&authv3.AttributeContext_HttpRequest{}, "path")
	http := protowire.AppendString(protowire.AppendTag(nil, path, protowire.BytesType), "/v1/caf\xc3")
	request := protowire.AppendBytes(protowire.AppendTag(nil, fieldNum(&authv3.AttributeContext_Request{}, "http"), protowire.BytesType), http)
	attrs := protowire.AppendBytes(protowire.AppendTag(nil, attrRequestNum, protowire.BytesType), request)
	wire = protowire.AppendBytes(protowire.AppendTag(wire, checkAttributesNum, protowire.BytesType), attrs)
	d := &checkDecode{req: new(authv3.CheckRequest)}
	if err := newLenientCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, d); err != nil {
		t.Fatal(err)
	}
	h := d.req.GetAttributes().GetRequest().GetHttp()
	if h.GetPath() != "/v1/caf\uFFFD" || h.GetBody() != "hello world" {
		t.Errorf("path %q and body %q, want the path repaired and the body kept", h.GetPath(), h.GetBody())
	}
	if d.req.GetAttributes().GetDestination() == nil {
		t.Error("the whole-message fallback lost the destination")
	}
}

// entry is a map<string, string> entry.
func entry(k, v string) []byte {
	b := protowire.AppendString(protowire.AppendTag(nil, entryKeyNum, protowire.BytesType), k)
	return protowire.AppendString(protowire.AppendTag(b, entryValueNum, protowire.BytesType), v)
}

// withHeaderEntry appends to the CheckRequest wire one more attributes
// with the raw header entry e.
func withHeaderEntry(wire, e []byte) []byte {
	http := protowire.AppendBytes(protowire.AppendTag(nil, httpHeadersNum, protowire.BytesType), e)
	request := protowire.AppendBytes(protowire.AppendTag(nil, requestHTTPNum, protowire.BytesType), http)
	attrs := protowire.AppendBytes(protowire.AppendTag(nil, attrRequestNum, protowire.BytesType), request)
	return protowire.AppendBytes(protowire.AppendTag(append([]byte{}, wire...), checkAttributesNum, protowire.BytesType), attrs)
}

// withEntries adds header entries protobuf accepts in odd shapes: an
// unknown field, no key, a value before its key, a repeated key.
func withEntries(wire []byte) []byte {
	unknown := protowire.AppendVarint(protowire.AppendTag(entry("x-odd", "1"), 7, protowire.VarintType), 9)
	noKey := protowire.AppendString(protowire.AppendTag(nil, entryValueNum, protowire.BytesType), "keyless")
	swapped := append(protowire.AppendString(protowire.AppendTag(nil, entryValueNum, protowire.BytesType), "v"),
		protowire.AppendString(protowire.AppendTag(nil, entryKeyNum, protowire.BytesType), "x-swapped")...)
	for _, e := range [][]byte{unknown, noKey, swapped, entry("x-user-id", "again"), entry("x-empty", "")} {
		wire = withHeaderEntry(wire, e)
	}
	return wire
}

// FuzzSkimCheck checks decodeCheck's contract on arbitrary messages.
func FuzzSkimCheck(f *testing.F) {
	// Small seeds with every field decodeCheck treats apart: the fuzzer
	// minimizes every input that finds new code, and long ones take it
	// the whole run.
	small := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Principal: "p"},
		Destination: &authv3.AttributeContext_Peer{Principal: "d"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Headers: map[string]string{"x-user-id": "u", "a": "b"}, Body: "w w"}},
		ContextExtensions: map[string]string{"action": "t"},
		MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"j": {Fields: map[string]*structpb.Value{"sub": structpb.NewStringValue("s")}}}},
	}}
	wire, err := proto.Marshal(small)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add([]byte{0x0a, 0x00})
	f.Add(withEntries(wire))
	f.Add(withHeaderEntry(wire, entry("x-a", "caf\xc3")))
	f.Fuzz(func(t *testing.T, b []byte) { checkSkim(t, b, false) })
}

// BenchmarkDecodeCheck decodes an Envoy-shaped CheckRequest (13 headers,
// a 300-word body, the jwt_authn payload) as the codec did before skimming
// ("whole") and as it does now without and with the jwt identity source.
func BenchmarkDecodeCheck(b *testing.B) {
	wire, err := proto.Marshal(fullEnvoyCheck(strings.Repeat("word ", 300)))
	if err != nil {
		b.Fatal(err)
	}
	codec := newLenientCodec()
	data := mem.BufferSlice{mem.SliceBuffer(wire)}
	for _, c := range []struct {
		name string
		v    func() any
	}{
		{name: "whole", v: func() any { return new(authv3.CheckRequest) }},
		{name: "skimmed", v: func() any { return &checkDecode{req: new(authv3.CheckRequest)} }},
		{name: "skimmed-jwt", v: func() any { return &checkDecode{req: new(authv3.CheckRequest), metadata: true} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := codec.Unmarshal(data, c.v()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeCheckMutations checks decodeCheck's contract on Envoy-shaped
// requests with random bytes overwritten and random cuts: a randomized
// complement of FuzzSkimCheck on inputs too long for the fuzzer to
// minimize.
func TestDecodeCheckMutations(t *testing.T) {
	wire, err := proto.Marshal(fullEnvoyCheck(strings.Repeat("word ", 40)))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(17, 1))
	for range 5000 {
		b := append([]byte{}, wire...)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		if rng.IntN(3) == 0 {
			b = b[:rng.IntN(len(b))]
		}
		checkSkim(t, b, false)
	}
}
