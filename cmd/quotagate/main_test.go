package main

import (
	"bytes"
	"context"
	"errors"
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
