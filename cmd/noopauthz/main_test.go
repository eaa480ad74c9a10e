package main

import (
	"context"
	"net"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		wantErr string // empty: run returns nil once ctx is done
	}{
		{name: "serves until cancelled", args: []string{"--addr", "127.0.0.1:0"}, getenv: noEnv},
		{name: "address from the environment", getenv: func(k string) string {
			if k == "NOOPAUTHZ_ADDR" {
				return "127.0.0.1:0"
			}
			return ""
		}},
		{name: "plain grpc-go defaults", args: []string{"--addr", "127.0.0.1:0", "--plain"}, getenv: noEnv},
		{name: "port in use", args: []string{"--addr", busy.Addr().String()}, getenv: noEnv, wantErr: "noopauthz: listen on " + busy.Addr().String()},
		{name: "stray argument", args: []string{"--addr", "127.0.0.1:0", "x"}, getenv: noEnv, wantErr: `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // serve, then stop at once
			var out, errOut strings.Builder
			err := run(ctx, tt.args, tt.getenv, &out, &errOut)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out.String(), "noopauthz: listening on 127.0.0.1:") {
					t.Errorf("run = %v, stdout %q; want nil and the listening line", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
