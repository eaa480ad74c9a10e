package extauthz

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// Field numbers of google.protobuf.Struct and google.protobuf.Value, and of
// the key and value of a map entry, as fixed by struct.proto and by the
// protobuf encoding of maps.
const (
	structFieldsNum protowire.Number = 1 // Struct.fields, map<string, Value>
	mapKeyNum       protowire.Number = 1
	mapValueNum     protowire.Number = 2
	valueNumberNum  protowire.Number = 2 // Value.number_value, double
	valueStringNum  protowire.Number = 3 // Value.string_value, string
)

// metadataCapacity holds the encoding of a typical Metadata (about 150
// bytes) without growing.
const metadataCapacity = 256

// metadataStruct is the dynamic_metadata Envoy stores under the ext_authz
// filter's namespace: the non-empty strings of m and its cost.
//
// The Struct's fields are written in their wire form, as unknown fields of
// an empty Struct, which protobuf marshals verbatim; the receiver reads an
// ordinary Struct. A map of Values is built, sized and encoded through
// reflection, which cost more than the rest of the response together.
// The Struct is therefore only for sending: in this process its Fields are
// empty (unmarshal its encoding to read it, as TestMetadataStructWire does).
func metadataStruct(m *Metadata) *structpb.Struct {
	st := new(structpb.Struct)
	st.ProtoReflect().SetUnknown(appendMetadata(make([]byte, 0, metadataCapacity), m))
	return st
}

// appendMetadata appends the fields of metadataStruct(m) in wire form.
func appendMetadata(b []byte, m *Metadata) []byte {
	b = appendStringEntry(b, "decision_id", m.DecisionID)
	b = appendStringEntry(b, "decision", m.Decision)
	b = appendStringEntry(b, "reason", m.Reason)
	b = appendStringEntry(b, "tier", m.Tier)
	b = appendStringEntry(b, "action", m.Action)
	b = appendStringEntry(b, "workflow", m.Workflow)
	b = appendStringEntry(b, "failure_mode", m.FailureMode)
	return appendNumberEntry(b, "cost", float64(m.Cost))
}

// appendStringEntry appends the Struct.fields entry key: {string_value:
// v}, unless v is empty.
func appendStringEntry(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	value := protowire.SizeTag(valueStringNum) + protowire.SizeBytes(len(v))
	b = appendEntryHead(b, key, value)
	b = protowire.AppendTag(b, valueStringNum, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendNumberEntry appends the Struct.fields entry key: {number_value: v}.
func appendNumberEntry(b []byte, key string, v float64) []byte {
	value := protowire.SizeTag(valueNumberNum) + protowire.SizeFixed64()
	b = appendEntryHead(b, key, value)
	b = protowire.AppendTag(b, valueNumberNum, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

// appendEntryHead appends a map entry's tag and length, its key, and the
// tag and length of its Value, whose encoding of valueSize bytes must
// follow.
func appendEntryHead(b []byte, key string, valueSize int) []byte {
	entry := protowire.SizeTag(mapKeyNum) + protowire.SizeBytes(len(key)) +
		protowire.SizeTag(mapValueNum) + protowire.SizeBytes(valueSize)
	b = protowire.AppendTag(b, structFieldsNum, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entry))
	b = protowire.AppendTag(b, mapKeyNum, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, mapValueNum, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(valueSize))
}
