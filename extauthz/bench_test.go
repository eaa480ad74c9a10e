package extauthz

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCheck measures the Check handler (adapter, identity, word count,
// engine charge, response) without the network, over many users.
func BenchmarkCheck(b *testing.B) {
	body := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20) // 180 words
	for _, users := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			cfg := testEngineRules()
			cfg.Tiers["freemium"] = engine.TierConfig{Limits: hourly(1 << 40), Tokens: engine.TokenGrant{Unlimited: true}}
			eng, err := engine.New(cfg, engine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			s, err := NewServer(eng, Options{}, Policy{
				Identity:     IdentityOptions{Sources: []Source{SourceJWT, SourceHeader}, HeaderTrusted: true},
				StripHeaders: []string{"x-quota-tier", "x-tier", "x-user-tier"},
			})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*authv3.CheckRequest, users)
			for i := range reqs {
				reqs[i] = envoyCheck(body, map[string]string{"x-user-id": fmt.Sprintf("user-%d", i), "content-length": fmt.Sprint(len(body))},
					map[string]string{"action": "translate"}, nil)
			}
			var next atomic.Uint64
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := s.Check(ctx, reqs[next.Add(1)%uint64(users)])
					if err != nil || resp.GetOkResponse() == nil {
						b.Fatalf("check: %v %v", resp, err)
					}
				}
			})
		})
	}
}

// BenchmarkCheckResponse measures building a CheckResponse from a verdict
// and, in "marshal", also encoding it as gRPC does before sending it;
// "wire" is "marshal" for the response the gRPC transport sends (okWire).
func BenchmarkCheckResponse(b *testing.B) {
	p := testPolicy(b, Policy{})
	d := engine.Decision{ID: decisionID, Allowed: true, Tier: "standard", Action: "translate", Cost: 15, Units: 3000,
		Balance: 985, HasBalance: true, Binding: hourBinding(100, 42), HasBinding: true}
	in := &Input{Headers: map[string]string{"x-user-id": "u"}}
	for _, name := range []string{"build", "marshal", "wire"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := Verdict{Decision: d}
				p.allow(time.Now(), in, &v)
				var resp *authv3.CheckResponse
				if name == "wire" {
					resp = sendResponse(&v)
				} else {
					resp = checkResponse(&v)
				}
				if name != "build" {
					if _, err := proto.Marshal(resp); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
