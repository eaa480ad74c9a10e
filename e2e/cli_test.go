package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCommand(t *testing.T) {
	s := startServer(t, "") // the embedded default config, as under make run
	if !strings.Contains(s.stderr.String(), "identity.header.trusted is true") {
		t.Errorf("no startup warning about the trusted header in:\n%s", s.stderr)
	}
	var tryLine string
	for _, l := range strings.Split(s.stdout.String(), "\n") {
		if strings.HasPrefix(l, "try: ") {
			tryLine = strings.TrimPrefix(l, "try: ")
		}
	}
	if !strings.Contains(tryLine, "quotagate check --addr "+s.grpcAddr) {
		t.Fatalf("no ready-to-paste check line in stdout:\n%s", s.stdout)
	}
	body := filepath.Join(t.TempDir(), "body.txt")
	os.WriteFile(body, []byte(strings.Repeat("bonjour ", 3000)), 0o600)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{name: "allowed", args: []string{"--user", "demo-standard", "--path", "/v1/translate", "--action", "translate", "--body-file", body},
			wantCode: 0, want: []string{"ALLOWED", "x-quota-cost: 15", "tier      standard"}},
		{name: "denied feature", args: []string{"--user", "demo-free", "--path", "/v1/summarize", "--action", "summarize", "--body", "hello"},
			wantCode: 1, want: []string{"DENIED", "403", "feature_not_in_plan"}},
		{name: "no identity", args: []string{"--path", "/v1/translate"}, wantCode: 1, want: []string{"DENIED", "401", "unauthenticated"}},
		{name: "jwt claims", args: []string{"--jwt-claims", `{"sub":"someone","tier":"enterprise"}`, "--path", "/v1/summarize", "--body", "a b c"},
			wantCode: 0, want: []string{"ALLOWED", "enterprise", "summarize"}},
		{name: "unreachable", args: []string{"--user", "demo-free"}, wantCode: 2, want: []string{"quotagate: check:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := s.grpcAddr
			if tt.name == "unreachable" {
				addr = freeAddr(t)
			}
			stdout, stderr, code := runBinary(t, nil, append([]string{"check", "--addr", addr, "--timeout", "2s"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output does not contain %q:\n%s%s", w, stdout, stderr)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		stdout, _, code := runBinary(t, nil, "check", "--addr", s.grpcAddr, "--user", "demo-enterprise", "--path", "/v1/summarize", "--body", "one two three", "--json")
		var out struct {
			Allowed         bool              `json:"allowed"`
			HTTPStatus      int               `json:"http_status"`
			GRPCCode        string            `json:"grpc_code"`
			Headers         map[string]string `json:"headers"`
			DynamicMetadata map[string]any    `json:"dynamic_metadata"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != 0 {
			t.Fatalf("exit %d, %v: %s", code, err, stdout)
		}
		if !out.Allowed || out.HTTPStatus != 200 || out.GRPCCode != "OK" || out.Headers["x-quota-decision-id"] == "" || out.DynamicMetadata["action"] != "summarize" {
			t.Errorf("json = %s", stdout)
		}
	})
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{args: []string{"--help"}, want: []string{"serve", "check", "config", "version"}},
		{args: []string{"serve", "--help"}, want: []string{"--config", "--grpc-addr", "--http-addr", "QUOTAGATE_GRPC_ADDR", "SIGTERM"}},
		{args: []string{"check", "--help"}, want: []string{"--addr", "--user", "--path", "--action", "--workflow", "--body-file", "--header", "--jwt-claims", "--json", "Exit codes"}},
		{args: []string{"version"}, want: []string{"quotagate "}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runBinary(t, nil, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("%v output lacks %q:\n%s", tt.args, w, stdout)
				}
			}
		})
	}
}
