package extauthz

import (
	"encoding/hex"

	"github.com/quotagate/quotagate/engine"
)

// traceRefOf returns the W3C trace context of a request's traceparent
// header (version 00 or a later one read as 00), or the zero TraceRef for
// none or a malformed one. The decision keeps it, so that its settlement
// is traced in the same trace. It does not allocate.
func traceRefOf(headers map[string]string) engine.TraceRef {
	var t engine.TraceRef
	v, ok := headers["traceparent"]
	// 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
	if !ok || len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') || v[:2] == "ff" {
		return engine.TraceRef{}
	}
	var flags [1]byte
	if _, err := hex.Decode(t.TraceID[:], []byte(v[3:35])); err != nil {
		return engine.TraceRef{}
	}
	if _, err := hex.Decode(t.SpanID[:], []byte(v[36:52])); err != nil {
		return engine.TraceRef{}
	}
	if _, err := hex.Decode(flags[:], []byte(v[53:55])); err != nil {
		return engine.TraceRef{}
	}
	if t.TraceID == ([16]byte{}) || t.SpanID == ([8]byte{}) {
		return engine.TraceRef{}
	}
	t.Sampled = flags[0]&1 == 1
	return t
}
