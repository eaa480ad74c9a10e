package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/quotagate/quotagate/engine"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestIdentify(t *testing.T) {
	all := []Source{SourceJWT, SourceMTLS, SourceHeader, SourceAPIKey}
	jwt := map[string]any{"sub": "alice", "tier": "enterprise", "roles": []any{"analyst", "admin"}, "team": "acme"}
	tests := []struct {
		name    string
		opts    IdentityOptions
		in      Input
		jwt     map[string]any
		want    engine.Request
		wantSrc Source
	}{
		{
			name: "jwt claims with tier roles team",
			opts: IdentityOptions{Sources: all, TierClaim: "tier", RolesClaim: "roles", TeamClaim: "team"},
			jwt:  jwt, in: Input{Principal: "spiffe://x", Headers: map[string]string{"x-user-id": "bob"}},
			want:    engine.Request{Subject: "alice", Tier: "enterprise", Roles: []string{"analyst", "admin"}, Team: "acme"},
			wantSrc: SourceJWT,
		},
		{
			name: "custom claim names and space separated roles",
			opts: IdentityOptions{Sources: []Source{SourceJWT}, SubjectClaim: "uid", RolesClaim: "scope", TierClaim: "plan"},
			jwt:  map[string]any{"uid": "u1", "scope": "read write", "plan": "standard"}, in: Input{},
			want:    engine.Request{Subject: "u1", Tier: "standard", Roles: []string{"read", "write"}},
			wantSrc: SourceJWT,
		},
		{
			name: "unconfigured claims are not used",
			opts: IdentityOptions{Sources: all},
			jwt:  jwt, in: Input{},
			want:    engine.Request{Subject: "alice"},
			wantSrc: SourceJWT,
		},
		{
			name: "jwt without subject falls through to mtls",
			opts: IdentityOptions{Sources: all},
			jwt:  map[string]any{"tier": "enterprise"}, in: Input{Principal: "spiffe://cluster.local/ns/a/sa/b"},
			want:    engine.Request{Subject: "spiffe://cluster.local/ns/a/sa/b"},
			wantSrc: SourceMTLS,
		},
		{
			name:    "trusted header",
			opts:    IdentityOptions{Sources: all, HeaderTrusted: true},
			in:      Input{Headers: map[string]string{"x-user-id": "bob", "x-tier": "enterprise"}},
			want:    engine.Request{Subject: "bob"},
			wantSrc: SourceHeader,
		},
		{
			name:    "untrusted header is ignored",
			opts:    IdentityOptions{Sources: all},
			in:      Input{Headers: map[string]string{"x-user-id": "bob"}},
			want:    engine.Request{},
			wantSrc: "",
		},
		{
			name:    "header name is case-insensitive in config",
			opts:    IdentityOptions{Sources: []Source{SourceHeader}, Header: "X-Auth-User", HeaderTrusted: true},
			in:      Input{Headers: map[string]string{"x-auth-user": "carol"}},
			want:    engine.Request{Subject: "carol"},
			wantSrc: SourceHeader,
		},
		{
			name:    "api key by hash",
			opts:    IdentityOptions{Sources: all, APIKeys: map[string]string{sha("k-123"): "dave"}},
			in:      Input{Headers: map[string]string{"x-api-key": "k-123"}},
			want:    engine.Request{Subject: "dave"},
			wantSrc: SourceAPIKey,
		},
		{
			name:    "unknown api key",
			opts:    IdentityOptions{Sources: all, APIKeys: map[string]string{sha("k-123"): "dave"}},
			in:      Input{Headers: map[string]string{"x-api-key": "wrong"}},
			want:    engine.Request{},
			wantSrc: "",
		},
		{
			name: "order matters: header before jwt",
			opts: IdentityOptions{Sources: []Source{SourceHeader, SourceJWT}, HeaderTrusted: true},
			jwt:  jwt, in: Input{Headers: map[string]string{"x-user-id": "bob"}},
			want:    engine.Request{Subject: "bob"},
			wantSrc: SourceHeader,
		},
		{
			name: "no sources configured",
			opts: IdentityOptions{},
			jwt:  jwt, in: Input{},
			want:    engine.Request{},
			wantSrc: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.withDefaults()
			if tt.jwt != nil {
				// As jwt_authn writes the payload into the metadata.
				payload, err := structpb.NewStruct(tt.jwt)
				if err != nil {
					t.Fatal(err)
				}
				tt.in.JWT = tt.opts.claimsFromStruct(payload)
			}
			var got engine.Request
			src := tt.opts.identify(&tt.in, &got)
			if src != tt.wantSrc {
				t.Errorf("source = %q, want %q", src, tt.wantSrc)
			}
			if got.Subject != tt.want.Subject || got.Tier != tt.want.Tier || got.Team != tt.want.Team || !slices.Equal(got.Roles, tt.want.Roles) {
				t.Errorf("request = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Source
		wantErr bool
	}{
		{name: "jwt", in: "jwt", want: SourceJWT},
		{name: "upper case", in: "MTLS", want: SourceMTLS},
		{name: "api key", in: "api_key", want: SourceAPIKey},
		{name: "unknown", in: "cookie", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSource(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseSource(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}
