package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "no command", args: nil, wantCode: 2, wantErr: "no command"},
		{name: "help", args: []string{"--help"}, wantOut: "Commands:"},
		{name: "unknown command", args: []string{"serv"}, wantCode: 2, wantErr: `unknown command "serv"`},
		{name: "version", args: []string{"version"}, wantOut: "quotagate "},
		{name: "version help", args: []string{"version", "--help"}, wantOut: "Usage: quotagate version"},
		{name: "serve help", args: []string{"serve", "--help"}, wantOut: "$QUOTAGATE_GRPC_ADDR"},
		{name: "serve bad flag", args: []string{"serve", "--nope"}, wantCode: 2, wantErr: "flag provided but not defined: -nope"},
		{name: "serve bad log level", args: []string{"serve", "--log-level", "loud"}, wantCode: 2, wantErr: "--log-level"},
		{name: "check help", args: []string{"check", "--help"}, wantOut: "Exit codes: 0 allowed, 1 denied, 2 error"},
		{name: "check bad header", args: []string{"check", "--header", "novalue"}, wantCode: 2, wantErr: "want name=value"},
		{name: "check bad jwt", args: []string{"check", "--jwt-claims", "[1]", "--addr", "127.0.0.1:1"}, wantCode: 2, wantErr: "--jwt-claims must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
			var errOut bytes.Buffer
			code := exitCode(err, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (err %v)", code, tt.wantCode, err)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantOut)
			}
			if tt.wantErr != "" && !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("error %q lacks %q", errOut.String(), tt.wantErr)
			}
			if n := strings.Count(errOut.String(), "\n"); n > 1 {
				t.Errorf("error is %d lines, want one: %q", n, errOut.String())
			}
		})
	}
}

func TestParseServeFlagsPrecedence(t *testing.T) {
	env := map[string]string{"QUOTAGATE_GRPC_ADDR": "env:1", "QUOTAGATE_HTTP_ADDR": "env:2", "QUOTAGATE_PATH": "/usr/bin"}
	getenv := func(k string) string { return env[k] }
	f, err := parseServeFlags([]string{"--grpc-addr", "flag:1"}, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.grpcAddr != "flag:1" || f.httpAddr != "env:2" || !f.set["grpc-addr"] || !f.set["http-addr"] || f.set["config"] {
		t.Errorf("flags = %+v", f)
	}
	c, err := parseCheckFlags(nil, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.path != "/" {
		t.Errorf("check --path picked up $QUOTAGATE_PATH: %q", c.path)
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "single", in: "config: bad", want: "config: bad"},
		{name: "problem list", in: "config: f.yaml: 2 problems:\n  a: x\n  b: y", want: "config: f.yaml: 2 problems: a: x; b: y"},
		{name: "plain lines", in: "one\ntwo", want: "one; two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oneLine(tt.in); got != tt.want {
				t.Errorf("oneLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExitCodeSilent(t *testing.T) {
	var w bytes.Buffer
	if code := exitCode(exitError{code: 1}, &w); code != 1 || w.Len() != 0 {
		t.Errorf("denied check: code %d, output %q", code, w.String())
	}
	if code := exitCode(errors.New("boom"), &w); code != 1 || w.String() != "quotagate: boom\n" {
		t.Errorf("plain error: code %d, output %q", code, w.String())
	}
}

// TestExitCodesMatchREADME checks the README's contract across commands:
// 0 success, 1 failure, 2 bad usage (an unknown command, subcommand or
// flag, a missing or extra argument, a file named on the command line or
// in the environment that cannot be read).
func TestExitCodesMatchREADME(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	invalid := filepath.Join(dir, "invalid.yaml")
	valid := filepath.Join(dir, "valid.yaml")
	if err := os.WriteFile(invalid, []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: ten, priority: urgent}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valid, []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
	}{
		{name: "config validate valid", args: []string{"config", "validate", valid}, wantCode: 0},
		{name: "config validate invalid", args: []string{"config", "validate", invalid}, wantCode: 1},
		{name: "config validate missing file", args: []string{"config", "validate", missing}, wantCode: 2},
		{name: "config validate a directory", args: []string{"config", "validate", dir}, wantCode: 2},
		{name: "config validate no file", args: []string{"config", "validate"}, wantCode: 2},
		{name: "config validate two files", args: []string{"config", "validate", valid, valid}, wantCode: 2},
		{name: "config validate bad flag", args: []string{"config", "validate", "--strict", valid}, wantCode: 2},
		{name: "config encrypt missing file", args: []string{"config", "encrypt", "--recipient", "age1kljm50g8fra2ccuytl9gwtv3yzd6rghf3ejt6wyxnv2ctcy20a7srdvctx", missing}, wantCode: 2},
		{name: "config decrypt missing file", args: []string{"config", "decrypt", missing}, wantCode: 2},
		{name: "config decrypt plaintext", args: []string{"config", "decrypt", valid}, wantCode: 1},
		{name: "config no subcommand", args: []string{"config"}, wantCode: 2},
		{name: "config unknown subcommand", args: []string{"config", "lint"}, wantCode: 2},
		{name: "config default argument", args: []string{"config", "default", "x"}, wantCode: 2},
		{name: "config default", args: []string{"config", "default"}, wantCode: 0},
		{name: "serve missing config", args: []string{"serve", "--config", missing}, wantCode: 2},
		{name: "serve missing config from env", args: []string{"serve"}, env: map[string]string{"QUOTAGATE_CONFIG": missing}, wantCode: 2},
		{name: "serve invalid config", args: []string{"serve", "--config", invalid}, wantCode: 1},
		{name: "envoy-config missing config", args: []string{"envoy-config", "--config", missing}, wantCode: 2},
		{name: "envoy-config invalid config", args: []string{"envoy-config", "--config", invalid}, wantCode: 1},
		{name: "usage no ledger", args: []string{"usage"}, wantCode: 2},
		{name: "usage missing data dir", args: []string{"usage", "--data-dir", filepath.Join(dir, "nope")}, wantCode: 2},
		{name: "ledger no subcommand", args: []string{"ledger"}, wantCode: 2},
		{name: "ledger verify missing data dir", args: []string{"ledger", "verify", "--data-dir", filepath.Join(dir, "nope")}, wantCode: 2},
		{name: "check missing body file", args: []string{"check", "--body-file", missing, "--addr", "127.0.0.1:1"}, wantCode: 2},
		{name: "version argument", args: []string{"version", "x"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := run(ctx, tt.args, func(k string) string { return tt.env[k] }, strings.NewReader(""), &stdout, &stderr)
			var errOut bytes.Buffer
			if code := exitCode(err, &errOut); code != tt.wantCode {
				t.Errorf("exit code %d, want %d (error %q)", code, tt.wantCode, errOut.String())
			}
			if tt.wantCode != 0 && !strings.HasPrefix(errOut.String(), "quotagate: ") {
				t.Errorf("error output %q, want one line starting quotagate:", errOut.String())
			}
		})
	}
}

// TestSubcommandHelp checks that every --help prints what the command does
// and lists flags only where there are some.
func TestSubcommandHelp(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		want      string
		wantFlags bool
	}{
		{name: "config validate", args: []string{"config", "validate", "--help"}, want: "every problem is printed at once"},
		{name: "config decrypt", args: []string{"config", "decrypt", "--help"}, want: "Print the decrypted FILE"},
		{name: "config default", args: []string{"config", "default", "--help"}, want: "embedded default configuration"},
		{name: "config encrypt", args: []string{"config", "encrypt", "--help"}, want: "-recipient", wantFlags: true},
		{name: "config", args: []string{"config", "--help"}, want: "Subcommands:"},
		{name: "version", args: []string{"version", "--help"}, want: "Usage: quotagate version"},
		{name: "serve", args: []string{"serve", "--help"}, want: "--grpc-addr", wantFlags: true},
		{name: "ledger verify", args: []string{"ledger", "verify", "--help"}, want: "--data-dir", wantFlags: true},
		{name: "usage", args: []string{"usage", "--help"}, want: "--format", wantFlags: true},
		{name: "envoy-config", args: []string{"envoy-config", "--help"}, want: "--bootstrap", wantFlags: true},
		{name: "check", args: []string{"check", "--help"}, want: "--user", wantFlags: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
			if err != nil {
				t.Fatalf("run = %v", err)
			}
			out := stdout.String()
			if !strings.Contains(out, tt.want) {
				t.Errorf("help %q lacks %q", out, tt.want)
			}
			if got := strings.Contains(out, "Flags:"); got != tt.wantFlags {
				t.Errorf("help has a Flags: section = %v, want %v:\n%s", got, tt.wantFlags, out)
			}
			if i := strings.Index(out, "Flags:"); i >= 0 && strings.TrimSpace(out[i+len("Flags:"):]) == "" {
				t.Errorf("help ends with an empty Flags: section:\n%s", out)
			}
		})
	}
}
