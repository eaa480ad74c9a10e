package extauthz

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
	"google.golang.org/protobuf/proto"
)

// TestOKWire checks that what okWire sends is the message okResponse
// builds, for the allowed verdicts the server makes: every header the
// engine's decision can add, none, an empty value, stripped headers, and
// the failure mode's.
func TestOKWire(t *testing.T) {
	p := testPolicy(t, Policy{StripHeaders: []string{"x-tier", "x-user-tier"}})
	allow := func(d engine.Decision, headers map[string]string) Verdict {
		v := Verdict{Decision: d}
		p.allow(t0, &Input{Headers: headers}, &v)
		return v
	}
	full := engine.Decision{ID: decisionID, Allowed: true, Tier: "standard", Action: "translate", Cost: 15, Units: 3000,
		Balance: 985, HasBalance: true, Binding: hourBinding(100, 42), HasBinding: true, Warning: "90% of the hour used"}
	s := &Server{logger: slog.New(slog.DiscardHandler)}
	var failOpen Verdict
	s.failure(t0, &engine.Decision{Tier: "standard", FailureMode: engine.FailOpen}, errors.New("store down"), &failOpen)
	tests := []struct {
		name string
		v    Verdict
	}{
		{name: "every header", v: allow(full, map[string]string{"x-tier": "enterprise", "x-user-tier": "x"})},
		{name: "plain", v: allow(engine.Decision{ID: decisionID, Allowed: true, Tier: "freemium"}, nil)},
		{name: "empty tier", v: allow(engine.Decision{ID: decisionID, Allowed: true}, nil)},
		{name: "fail open", v: failOpen},
		{name: "nothing", v: Verdict{Allowed: true}},
		{name: "empty key and value", v: Verdict{Allowed: true, Headers: []Header{{}, {Key: "k"}}, RemoveHeaders: []string{""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, got := sent(t, okResponse(&tt.v)), sent(t, okWire(&tt.v))
			if !proto.Equal(got, want) {
				t.Errorf("okWire sends\n%v\nwant\n%v", got, want)
			}
			if got.GetOkResponse() == nil || got.GetDynamicMetadata() == nil || got.GetStatus() == nil {
				t.Errorf("okWire sends %v: a message is missing", got)
			}
		})
	}
	denied := Verdict{Decision: engine.Decision{ID: decisionID, Reason: engine.ReasonWindowExceeded}}
	p.deny(t0, &denied)
	if !proto.Equal(sendResponse(&denied), checkResponse(&denied)) {
		t.Error("sendResponse of a denial is not checkResponse's")
	}
	sent(t, sendResponse(&denied))
}

// TestCodecSendsWireOnlyResponsesAsTheyAre: the codec passes an okWire
// response's bytes through only when nothing else is set, which protobuf
// would encode too; every other message goes through protobuf.
func TestCodecSendsWireOnlyResponsesAsTheyAre(t *testing.T) {
	v := Verdict{Allowed: true, Headers: []Header{{Key: "x-quota-remaining", Value: "9"}}}
	resp := okWire(&v)
	if wireOnly(resp) == nil {
		t.Fatal("wireOnly does not recognize okWire's response")
	}
	withStatus := okWire(&v)
	withStatus.Status = checkResponse(&v).Status
	for _, m := range []any{withStatus, &authv3.CheckResponse{}, &authv3.CheckRequest{}, (*authv3.CheckResponse)(nil)} {
		if wireOnly(m) != nil {
			t.Errorf("wireOnly(%T %v) passes it through; only a response of unknown fields alone may be", m, m)
		}
	}
	sent(t, withStatus) // through protobuf: its status and the unknown fields
}

// sent is resp as its receiver reads it, sent through the server's codec.
func sent(t *testing.T, resp *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	data, err := newLenientCodec().Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	b := data.Materialize()
	if want, err := proto.Marshal(resp); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("the codec sends %x, want protobuf's %x (%v)", b, want, err)
	}
	out := new(authv3.CheckResponse)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
