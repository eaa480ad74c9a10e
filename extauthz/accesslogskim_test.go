package extauthz

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// settleView is what settlement reads from one entry, comparable.
type settleView struct {
	id, headerID      string
	code              uint32
	noResponse        bool
	oversized         bool
	headers           map[string]string
	idBad, headerBad  bool
	idSet, headerSet  bool
	viaUpstream, fail bool
}

// viewFromSkim is settleView of a decoded entry.
func viewFromSkim(e *logView) settleView {
	v := settleView{code: e.code, oversized: e.oversized, idSet: e.idSet, idBad: e.idBad, headerSet: e.headerSet,
		headerBad: e.headBad, viaUpstream: e.viaUpstream, fail: e.upstreamFailed()}
	if e.idSet && !e.idBad {
		v.id = e.id.String()
	}
	if e.headerSet && !e.headBad {
		v.headerID = e.headerID.String()
	}
	if len(e.headers) > 0 {
		v.headers = map[string]string{}
		for _, h := range e.headers {
			v.headers[h.name] = h.value
		}
	}
	return v
}

// viewFromProto reads the same through the message tree: the oracle.
func viewFromProto(e *accesslogv3.HTTPAccessLogEntry) settleView {
	var v settleView
	md := e.GetCommonProperties().GetMetadata().GetFilterMetadata()[ExtAuthzFilter]
	if id := md.GetFields()["decision_id"].GetStringValue(); id != "" {
		v.idSet = true
		if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
			v.id = u.String()
		} else {
			v.idBad = true
		}
	}
	if id, ok := e.GetRequest().GetRequestHeaders()[HeaderDecisionID]; ok {
		v.headerSet = true
		if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
			v.headerID = u.String()
		} else {
			v.headerBad = true
		}
	}
	v.code = e.GetResponse().GetResponseCode().GetValue()
	v.viaUpstream = e.GetResponse().GetResponseCodeDetails() == "via_upstream"
	if f := e.GetCommonProperties().GetResponseFlags(); f != nil {
		v.fail = f.GetUpstreamRequestTimeout() || f.GetUpstreamRemoteReset() || f.GetUpstreamConnectionFailure() ||
			f.GetUpstreamConnectionTermination() || f.GetLocalReset() || f.GetNoHealthyUpstream() ||
			f.GetUpstreamOverflow() || f.GetStreamIdleTimeout() || f.GetUpstreamMaxStreamDurationReached() ||
			f.GetUpstreamProtocolError() || f.GetUpstreamRetryLimitExceeded()
	}
	hs := e.GetResponse().GetResponseHeaders()
	for k, val := range hs {
		if len(k)+len(val) > maxSettleHeaderBytes {
			v.oversized = true
		}
	}
	if len(hs) > maxSettleHeaders {
		v.oversized = true
	}
	lower := map[string]bool{}
	for k := range hs {
		if lower[strings.ToLower(k)] {
			v.oversized = true // two names that differ only in case
		}
		lower[strings.ToLower(k)] = true
	}
	if !v.oversized && len(hs) > 0 {
		v.headers = map[string]string{}
		for k, val := range hs {
			v.headers[strings.ToLower(k)] = val
		}
	}
	return v
}

// randomEntry is an Envoy-shaped entry with random choices of what
// settlement reads.
func randomEntry(r *rand.Rand) *accesslogv3.HTTPAccessLogEntry {
	ids := []string{"", uuid.NewString(), "not-a-uuid", strings.ToUpper(uuid.NewString()), "{" + uuid.NewString() + "}"}
	e := logEntry(ids[r.IntN(len(ids))], []uint32{0, 200, 429, 500, 503, 504, 1000}[r.IntN(7)], nil)
	if r.IntN(3) == 0 {
		e.Request.RequestHeaders = map[string]string{HeaderDecisionID: ids[r.IntN(len(ids))], "x-request-id": "abc"}
	}
	if r.IntN(2) == 0 {
		e.Response.ResponseCodeDetails = "upstream_reset_before_response_started"
	}
	if r.IntN(2) == 0 {
		e.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRemoteReset: r.IntN(2) == 0,
			UpstreamRequestTimeout: r.IntN(3) == 0, RateLimited: r.IntN(2) == 0, FaultInjected: true}
	}
	switch r.IntN(4) {
	case 0:
		e.Response.ResponseHeaders = map[string]string{"X-Usage-Words": fmt.Sprint(r.IntN(5000)), "content-type": "text/plain"}
	case 1:
		e.Response.ResponseHeaders = map[string]string{"x-big": strings.Repeat("v", maxSettleHeaderBytes)}
	case 2:
		e.Response.ResponseHeaders = map[string]string{}
		for i := range maxSettleHeaders + r.IntN(2) {
			e.Response.ResponseHeaders[fmt.Sprintf("x-h%d", i)] = "1"
		}
	}
	if r.IntN(5) == 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(0)
	}
	return e
}

func TestDecodeALSMatchesTheProtoDecoder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	d := &alsDecode{max: 8}
	for round := range 300 {
		n := r.IntN(12)
		entries := make([]*accesslogv3.HTTPAccessLogEntry, n)
		for i := range entries {
			entries[i] = randomEntry(r)
		}
		msg := logBatch(round%2 == 0, entries...)
		if round%7 == 0 {
			msg.LogEntries = &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{
				LogEntry: make([]*accesslogv3.TCPAccessLogEntry, n)}}
			for i := range n {
				msg.GetTcpLogs().LogEntry[i] = &accesslogv3.TCPAccessLogEntry{}
			}
		}
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeALS(b, d); err != nil {
			t.Fatalf("round %d: decodeALS: %v", round, err)
		}
		checkAgainstProto(t, msg, d)
	}
}

// checkAgainstProto fails unless d is what the message tree of msg says.
func checkAgainstProto(t *testing.T, msg *alsv3.StreamAccessLogsMessage, d *alsDecode) {
	t.Helper()
	http := msg.GetHttpLogs().GetLogEntry()
	if d.http != len(http) || d.tcp != len(msg.GetTcpLogs().GetLogEntry()) {
		t.Fatalf("decoded %d http and %d tcp entries, want %d and %d", d.http, d.tcp, len(http), len(msg.GetTcpLogs().GetLogEntry()))
	}
	if want := min(len(http), d.max); len(d.entries) != want {
		t.Fatalf("decoded %d entries in full, want %d", len(d.entries), want)
	}
	for i := range d.entries {
		got, want := viewFromSkim(&d.entries[i]), viewFromProto(http[i])
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func TestDecodeALSRefusesMalformedWire(t *testing.T) {
	b, err := proto.Marshal(logBatch(true, logEntry(uuid.NewString(), 503, map[string]string{"a": "b"})))
	if err != nil {
		t.Fatal(err)
	}
	d := &alsDecode{max: 8}
	for cut := 1; cut < len(b); cut++ {
		err := decodeALS(b[:cut], d)
		if proto.Unmarshal(b[:cut], new(alsv3.StreamAccessLogsMessage)) != nil && err == nil {
			// protobuf refused it; a prefix may still parse as fewer
			// fields only where protobuf accepts it too.
			t.Fatalf("a message cut at %d of %d bytes decoded", cut, len(b))
		}
	}
}

func FuzzDecodeALS(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		b, err := proto.Marshal(logBatch(true, randomEntry(r), randomEntry(r)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &alsDecode{max: 4}
		err := decodeALS(b, d)
		var msg alsv3.StreamAccessLogsMessage
		if perr := proto.Unmarshal(b, &msg); perr != nil || err != nil {
			return // both may refuse; invalid UTF-8 is protobuf's alone to refuse
		}
		checkAgainstProto(t, &msg, d)
	})
}

// TestDecodeALSMergesAsProtobuf sends entries whose fields come twice: an
// entry is the concatenation of two or three encoded entries, which
// protobuf reads as one, merged (a later scalar or wrapper value wins, a
// later map key replaces its value, a oneof takes its last member). The
// skim must read the same as the message tree.
func TestDecodeALSMergesAsProtobuf(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	id := uuid.NewString()
	special := func() *accesslogv3.HTTPAccessLogEntry {
		e := logEntry("", 0, nil)
		switch r.IntN(5) {
		case 0: // a response code wrapper without a value
			e.Response.ResponseCode = &wrapperspb.UInt32Value{}
		case 1: // flags sent again, cleared
			e.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{}
		case 2: // the ext_authz metadata again, without a decision id
			md, _ := structpb.NewStruct(map[string]any{"tier": "standard"})
			e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{ExtAuthzFilter: md}}
		case 3: // a decision id that is a number
			md, _ := structpb.NewStruct(map[string]any{"decision_id": 42})
			e.CommonProperties.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{ExtAuthzFilter: md}}
		case 4:
			e = logEntry(id, 503, nil)
			e.CommonProperties.ResponseFlags = &accesslogv3.ResponseFlags{UpstreamRemoteReset: true}
		}
		return e
	}
	field := func(num protowire.Number, b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
	}
	mapEntry := func(k string, v []byte) []byte {
		return append(field(mapKeyNum, []byte(k)), field(mapValueNum, v)...)
	}
	// raw are entries protobuf would not write but reads: a flag sent
	// as false, and a Value that holds a string, then a number.
	raw := func() []byte {
		if r.IntN(2) == 0 {
			flags := protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.VarintType), 0)
			return field(entryCommon, field(commonFlags, flags))
		}
		value := field(valueStringValue, []byte(id))
		if r.IntN(2) == 0 {
			value = protowire.AppendFixed64(protowire.AppendTag(value, 2, protowire.Fixed64Type), 1)
		}
		st := field(structFieldsMap, mapEntry("decision_id", value))
		return field(entryCommon, field(commonMetadata, field(metadataFilter, mapEntry(ExtAuthzFilter, st))))
	}
	for round := range 500 {
		var entries [][]byte
		for range 1 + r.IntN(3) {
			var entry []byte
			for range 2 + r.IntN(2) {
				e := randomEntry(r)
				if r.IntN(2) == 0 {
					e = special()
				}
				b, err := proto.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				if r.IntN(3) == 0 {
					b = raw()
				}
				entry = append(entry, b...)
			}
			entries = append(entries, entry)
		}
		var logs []byte
		for _, e := range entries {
			logs = protowire.AppendBytes(protowire.AppendTag(logs, entriesLogEntry, protowire.BytesType), e)
		}
		b := protowire.AppendBytes(protowire.AppendTag(nil, msgHTTPLogs, protowire.BytesType), logs)
		var msg alsv3.StreamAccessLogsMessage
		if err := proto.Unmarshal(b, &msg); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		d := &alsDecode{max: 4}
		if err := decodeALS(b, d); err != nil {
			t.Fatalf("round %d: decodeALS: %v", round, err)
		}
		checkAgainstProto(t, &msg, d)
	}
}
