package extauthz

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
)

// BenchmarkGRPCCheck is one Check through a real gRPC server and client
// (over bufconn): the transport and the codec included.
func BenchmarkGRPCCheck(b *testing.B) {
	client := benchGRPCClient(b)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "POST", Path: "/v1/translate", Body: strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20),
		Headers: map[string]string{"x-user-id": "u1"},
	}}, ContextExtensions: map[string]string{"action": "translate"}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGRPCCheckEnvoy is BenchmarkGRPCCheck with the request Envoy
// sends behind jwt_authn: 15 headers, a 300-word translate body, source and
// destination peers, and the jwt_authn payload in the metadata context,
// which the header identity source does not read.
func BenchmarkGRPCCheckEnvoy(b *testing.B) {
	client := benchGRPCClient(b)
	body := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 33)
	req := envoyCheck(body, map[string]string{
		"x-user-id": "u1", "content-length": "1500", "accept": "application/json", "accept-encoding": "gzip, deflate",
		"user-agent": "example-sdk-python/2.4.1", "x-forwarded-proto": "https", "x-forwarded-for": "10.1.2.3", "x-envoy-external-address": "10.1.2.3",
	}, map[string]string{"action": "translate"}, map[string]any{
		"sub": "u1", "iss": "https://auth.example.com/", "aud": "api.example.com", "scope": "translate summarize", "iat": 1.7e9, "exp": 1.7e9 + 3600,
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGRPCClient returns a client of a real gRPC server (over bufconn)
// whose header-identified callers have no limit that a benchmark reaches.
func benchGRPCClient(b *testing.B) authv3.AuthorizationClient {
	b.Helper()
	cfg := testEngineRules()
	cfg.Tiers["freemium"] = engine.TierConfig{Limits: hourly(1 << 40), Tokens: engine.TokenGrant{Unlimited: true}}
	eng, err := engine.New(cfg, engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(eng, Options{}, Policy{Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}})
	if err != nil {
		b.Fatal(err)
	}
	conn, _, _ := startGRPC(b, s, GRPCOptions{})
	client := authv3.NewAuthorizationClient(conn)
	return client
}
