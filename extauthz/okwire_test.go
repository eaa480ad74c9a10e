package extauthz

import (
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
}

// sent is resp as its receiver reads it.
func sent(t *testing.T, resp *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	out := new(authv3.CheckResponse)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
