package extauthz

import (
	"errors"

	"github.com/google/uuid"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the access log messages settlement reads, as fixed by
// envoy/service/accesslog/v3/als.proto, envoy/data/accesslog/v3/accesslog.proto,
// envoy/config/core/v3/base.proto and google/protobuf/{struct,wrappers}.proto.
const (
	msgHTTPLogs      protowire.Number = 2  // StreamAccessLogsMessage.http_logs
	msgTCPLogs       protowire.Number = 3  // StreamAccessLogsMessage.tcp_logs
	entriesLogEntry  protowire.Number = 1  // {HTTP,TCP}AccessLogEntries.log_entry
	entryCommon      protowire.Number = 1  // HTTPAccessLogEntry.common_properties
	entryRequest     protowire.Number = 3  // HTTPAccessLogEntry.request
	entryResponse    protowire.Number = 4  // HTTPAccessLogEntry.response
	commonFlags      protowire.Number = 16 // AccessLogCommon.response_flags
	commonMetadata   protowire.Number = 17 // AccessLogCommon.metadata
	metadataFilter   protowire.Number = 1  // Metadata.filter_metadata
	requestHeaders   protowire.Number = 13 // HTTPRequestProperties.request_headers
	responseCode     protowire.Number = 1  // HTTPResponseProperties.response_code (UInt32Value)
	responseHeaders  protowire.Number = 4  // HTTPResponseProperties.response_headers
	responseDetails  protowire.Number = 6  // HTTPResponseProperties.response_code_details
	wrapperValue     protowire.Number = 1  // UInt32Value.value
	structFieldsMap  protowire.Number = 1  // Struct.fields
	valueStringValue protowire.Number = 3  // Value.string_value
)

// isValueKind reports whether a field is a member of
// google.protobuf.Value's kind oneof: null_value (1), number_value (2),
// string_value (3), bool_value (4), struct_value (5) or list_value (6),
// each with its own wire type. A field of another wire type is not the
// member (protobuf keeps it as unknown).
func isValueKind(num protowire.Number, typ protowire.Type) bool {
	switch num {
	case 1, 4:
		return typ == protowire.VarintType
	case 2:
		return typ == protowire.Fixed64Type
	case valueStringValue, 5, 6:
		return typ == protowire.BytesType
	}
	return false
}

// upstreamFailureFlags are the ResponseFlags fields that say the upstream
// never answered: no healthy upstream (2), request timeout (3), local
// reset (4), remote reset (5), connection failure (6) and termination (7),
// overflow (8), retry limit exceeded (16), stream idle timeout (17), max
// stream duration reached (20) and protocol error (24).
var upstreamFailureFlags = [...]protowire.Number{2, 3, 4, 5, 6, 7, 8, 16, 17, 20, 24}

// alsDecode is what the access log stream asks lenientCodec to decode a
// StreamAccessLogsMessage into: only what settlement reads, without the
// message tree (its maps and Structs were most of the CPU of a
// settlement). Its slices are reused from message to message.
type alsDecode struct {
	// max bounds the HTTP entries decoded; past it, they are only counted.
	max int
	// entries are the HTTP entries decoded; http counts them all, tcp the
	// TCP entries.
	entries   []logView
	http, tcp int
}

// logView is one HTTP access log entry as settlement reads it.
type logView struct {
	// id is the decision id from the ext_authz metadata; idSet reports one
	// was there, and idBad that it was not a UUID in canonical form.
	id           uuid.UUID
	idSet, idBad bool
	// headerID is the same from the logged x-quota-decision-id request
	// header, read when the metadata has none.
	headerID           uuid.UUID
	headerSet, headBad bool
	code               uint32
	viaUpstream        bool
	// failFlags has bit i set when upstreamFailureFlags[i] was last
	// written true (see upstreamFailed).
	failFlags uint16
	// headers are the logged response headers (names in lower case);
	// oversized is set when they exceed the bounds, and they are dropped.
	headers   []logHeader
	oversized bool
}

// upstreamFailed reports whether the entry's response flags say the
// upstream never answered.
func (e *logView) upstreamFailed() bool { return e.failFlags != 0 }

// clearID forgets the decision id read from the metadata: a map key sent
// again replaces what an earlier one said.
func (e *logView) clearID() { e.id, e.idSet, e.idBad = uuid.UUID{}, false, false }

// logHeader is one logged response header: its name as sent, in lower
// case, and its value.
type logHeader struct{ raw, name, value string }

// boundHeaders drops the entry's response headers, and marks it
// oversized, when one is longer than maxSettleHeaderBytes or two names
// differ only in case (which one a lookup would find is then a guess).
func (e *logView) boundHeaders() {
	for i, h := range e.headers {
		over := len(h.raw)+len(h.value) > maxSettleHeaderBytes
		for j := 0; j < i && !over; j++ {
			over = e.headers[j].name == h.name
		}
		if over {
			e.oversized, e.headers = true, e.headers[:0]
			return
		}
	}
}

var errALSWire = errors.New("extauthz: malformed StreamAccessLogsMessage")

// unmarshalALS decodes data into d.
func unmarshalALS(data mem.BufferSlice, d *alsDecode) error {
	raw := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer raw.Free()
	return decodeALS(raw.ReadOnlyData(), d)
}

// decodeALS decodes the wire form of a StreamAccessLogsMessage into d. A
// message that is not well-formed protobuf is an error; fields it does not
// know are skipped, as protobuf skips them.
func decodeALS(b []byte, d *alsDecode) error {
	d.entries, d.http, d.tcp = d.entries[:0], 0, 0
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == msgHTTPLogs && typ == protowire.BytesType:
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != entriesLogEntry || typ != protowire.BytesType {
					return nil
				}
				d.http++
				if d.http > d.max {
					return nil
				}
				return d.addEntry(v)
			})
		case num == msgTCPLogs && typ == protowire.BytesType:
			return eachField(v, func(num protowire.Number, typ protowire.Type, _ []byte) error {
				if num == entriesLogEntry && typ == protowire.BytesType {
					d.tcp++
				}
				return nil
			})
		}
		return nil
	})
}

// addEntry decodes one HTTPAccessLogEntry into the next of d.entries.
func (d *alsDecode) addEntry(b []byte) error {
	if len(d.entries) < cap(d.entries) {
		d.entries = d.entries[:len(d.entries)+1]
	} else {
		d.entries = append(d.entries, logView{})
	}
	e := &d.entries[len(d.entries)-1]
	hs := e.headers[:0]
	*e = logView{headers: hs}
	if err := e.readEntry(b); err != nil {
		return err
	}
	e.boundHeaders()
	return nil
}

// readEntry reads the fields of one HTTPAccessLogEntry that settlement
// uses.
func (e *logView) readEntry(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case entryCommon:
			return e.readCommon(v)
		case entryRequest:
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != requestHeaders || typ != protowire.BytesType {
					return nil
				}
				k, val, err := mapEntry(v)
				if err == nil && string(k) == HeaderDecisionID {
					e.headerID, e.headBad = parseIDBytes(val)
					e.headerSet = true
				}
				return err
			})
		case entryResponse:
			return e.readResponse(v)
		}
		return nil
	})
}

// readCommon reads the response flags and the ext_authz metadata.
func (e *logView) readCommon(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case commonFlags:
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if typ != protowire.VarintType {
					return nil
				}
				// A flag written again (the message sent twice is
				// merged) takes its last value, as in protobuf.
				for i, f := range upstreamFailureFlags {
					if num == f {
						if x, _ := protowire.ConsumeVarint(v); x != 0 {
							e.failFlags |= 1 << i
						} else {
							e.failFlags &^= 1 << i
						}
					}
				}
				return nil
			})
		case commonMetadata:
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != metadataFilter || typ != protowire.BytesType {
					return nil
				}
				k, st, err := mapEntry(v)
				if err != nil || string(k) != ExtAuthzFilter {
					return err
				}
				// A key sent again replaces its Struct, as in the
				// protobuf map.
				e.clearID()
				return e.readAuthzStruct(st)
			})
		}
		return nil
	})
}

// readAuthzStruct reads decision_id from the ext_authz filter's Struct.
func (e *logView) readAuthzStruct(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != structFieldsMap || typ != protowire.BytesType {
			return nil
		}
		k, val, err := mapEntry(v)
		if err != nil || string(k) != "decision_id" {
			return err
		}
		// The last decision_id wins, and within its Value the last
		// member of the kind oneof that was sent.
		e.clearID()
		var s []byte
		err = eachField(val, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if isValueKind(num, typ) {
				s = nil
				if num == valueStringValue {
					s = v
				}
			}
			return nil
		})
		if err == nil && len(s) > 0 {
			e.id, e.idBad = parseIDBytes(s)
			e.idSet = true
		}
		return err
	})
}

// readResponse reads the code, its details and the logged headers.
func (e *logView) readResponse(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == responseCode && typ == protowire.BytesType:
			// Sent twice, the wrappers merge: a value sent last wins,
			// and one without a value keeps the code.
			return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num == wrapperValue && typ == protowire.VarintType {
					x, _ := protowire.ConsumeVarint(v)
					e.code = uint32(x)
				}
				return nil
			})
		case num == responseDetails && typ == protowire.BytesType:
			e.viaUpstream = string(v) == "via_upstream"
		case num == responseHeaders && typ == protowire.BytesType:
			k, val, err := mapEntry(v)
			if err != nil {
				return err
			}
			if e.oversized {
				return nil
			}
			// A name sent again replaces its value, as it does in the
			// protobuf map; the bounds apply to what is left (boundHeaders).
			for i := range e.headers {
				if e.headers[i].raw == string(k) {
					e.headers[i].value = string(val)
					return nil
				}
			}
			if len(e.headers) == maxSettleHeaders {
				e.oversized, e.headers = true, e.headers[:0]
				return nil
			}
			e.headers = append(e.headers, logHeader{raw: string(k), name: lowerASCII(string(k)), value: string(val)})
		}
		return nil
	})
}

// parseIDBytes parses a decision id in canonical form; bad reports
// anything else.
func parseIDBytes(b []byte) (id uuid.UUID, bad bool) {
	if len(b) != 36 {
		return uuid.UUID{}, true
	}
	id, err := uuid.ParseBytes(b)
	return id, err != nil
}

// mapEntry returns the key (field 1) and value (field 2) of a map entry.
func mapEntry(b []byte) (k, v []byte, err error) {
	err = eachField(b, func(num protowire.Number, typ protowire.Type, x []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case mapKeyNum:
			k = x
		case mapValueNum:
			v = x
		}
		return nil
	})
	return k, v, err
}

// eachField calls fn with every field of the message b: its number, type
// and, for a bytes field its content, for a varint the varint's bytes.
// Groups and fixed-width fields are skipped. A malformed message is
// errALSWire.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errALSWire
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			x, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return errALSWire
			}
			v, n = x, m
		case protowire.VarintType:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return errALSWire
			}
			v, n = b[:m], m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errALSWire
			}
		}
		if err := fn(num, typ, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
