package main

import (
	"strings"
	"testing"

	"github.com/quotagate/quotagate/config"
)

func TestExposureWarning(t *testing.T) {
	trusted := "quota_manager:\n  tiers: {free: {api_calls_per_hour: 10}}\nidentity:\n  header: {name: x-user-id, trusted: true}\n"
	tests := []struct {
		name  string
		yaml  string
		addrs []string
		want  string // a substring of the warning; empty means no warning
	}{
		{name: "trusted header on every interface", yaml: trusted, addrs: []string{":9191"}, want: ":9191"},
		{name: "trusted header on a wildcard IPv4", yaml: trusted, addrs: []string{"0.0.0.0:9191"}, want: "0.0.0.0:9191"},
		{name: "trusted header on a wildcard IPv6", yaml: trusted, addrs: []string{"[::]:9191"}, want: "[::]:9191"},
		{name: "trusted header on a LAN address", yaml: trusted, addrs: []string{"10.0.0.5:9191"}, want: "10.0.0.5:9191"},
		{name: "trusted header on a host name", yaml: trusted, addrs: []string{"quotagate:9191"}, want: "quotagate:9191"},
		{name: "only the HTTP authorization listener is exposed", yaml: trusted, addrs: []string{"127.0.0.1:9191", ":9192"}, want: ":9192"},
		{name: "trusted header on loopback", yaml: trusted, addrs: []string{"127.0.0.1:9191", "[::1]:9192"}},
		{name: "trusted header on localhost", yaml: trusted, addrs: []string{"localhost:9191"}},
		{name: "empty addresses are skipped", yaml: trusted, addrs: []string{"127.0.0.1:9191", ""}},
		{name: "header not trusted", yaml: "quota_manager:\n  tiers: {free: {api_calls_per_hour: 10}}\n", addrs: []string{":9191"}},
		{name: "trusted header not among the sources", addrs: []string{":9191"},
			yaml: trusted + "  sources: [jwt]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got := exposureWarning(f, tt.addrs...)
			if tt.want == "" {
				if got != "" {
					t.Errorf("exposureWarning(%q) = %q, want none", tt.addrs, got)
				}
				return
			}
			if !strings.Contains(got, tt.want) || !strings.Contains(got, "x-user-id") || !strings.Contains(got, "127.0.0.1") {
				t.Errorf("exposureWarning(%q) = %q, want it to name %s, the header and the loopback fix", tt.addrs, got, tt.want)
			}
		})
	}
}

func TestDefaultConfigListensOnLoopback(t *testing.T) {
	f, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if f.Server.GRPCAddr != "127.0.0.1:9191" || f.Server.HTTPAddr != "127.0.0.1:8080" {
		t.Errorf("default config listens on %s and %s, want 127.0.0.1:9191 and 127.0.0.1:8080", f.Server.GRPCAddr, f.Server.HTTPAddr)
	}
	if w := exposureWarning(f, f.Server.GRPCAddr); w != "" {
		t.Errorf("the default config warns about itself: %s", w)
	}
}
