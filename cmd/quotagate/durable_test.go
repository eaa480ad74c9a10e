package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/config"
)

func TestOpenBackends(t *testing.T) {
	mustParse := func(t *testing.T, extra string) *config.File {
		t.Helper()
		f, err := config.Parse([]byte("quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name       string
		extra      string
		durability string
		dataDir    bool
		ledger     string // relative to the temp dir; "" means none
		want       string // storeDesc, with DIR for the data directory
		wantSync   bool
		committer  bool
	}{
		{name: "memory without a data dir", want: "memory"},
		{name: "data dir shares one file", dataDir: true, ledger: "data/ledger.db", want: "sqlite:DIR/ledger.db"},
		{name: "sync commits state with records", dataDir: true, durability: "sync", ledger: "data/ledger.db",
			want: "sqlite:DIR/ledger.db", wantSync: true, committer: true},
		{name: "store.durability sync", extra: "store: {durability: sync}\n", dataDir: true, ledger: "data/ledger.db",
			want: "sqlite:DIR/ledger.db", wantSync: true, committer: true},
		{name: "explicit memory keeps the ledger", extra: "store: {kind: memory}\n", dataDir: true, ledger: "data/ledger.db", want: "memory"},
		{name: "ledger elsewhere", dataDir: true, durability: "sync", ledger: "other.db", want: "sqlite:DIR/state.db", wantSync: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			o := assembleOptions{Logger: discardLogger(), Durability: tt.durability}
			if tt.dataDir {
				o.DataDir = filepath.Join(tmp, "data")
			}
			if tt.ledger == "other.db" {
				o.LedgerDSN = filepath.Join(tmp, "other.db")
			}
			b, err := openBackends(context.Background(), mustParse(t, tt.extra), o)
			if err != nil {
				t.Fatal(err)
			}
			defer b.close(discardLogger())
			want := strings.ReplaceAll(tt.want, "DIR", o.DataDir)
			if b.storeDesc != want || b.sync != tt.wantSync || (b.commit != nil) != tt.committer {
				t.Errorf("store %q sync %v committer %v; want %q %v %v", b.storeDesc, b.sync, b.commit != nil, want, tt.wantSync, tt.committer)
			}
			if (b.led != nil) != (tt.ledger != "") {
				t.Errorf("ledger open = %v, want %v", b.led != nil, tt.ledger != "")
			}
		})
	}
}

func TestDurabilityFlag(t *testing.T) {
	f, err := config.Parse([]byte("quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, flag string
		want       bool
		wantErr    bool
	}{
		{name: "config default", flag: "", want: false},
		{name: "batch", flag: "batch", want: false},
		{name: "async synonym", flag: "async", want: false},
		{name: "sync", flag: "sync", want: true},
		{name: "bad", flag: "fsync", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := durability(tt.flag, f)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("durability(%q) = %v, %v; want %v, error %v", tt.flag, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRestartOnly(t *testing.T) {
	parse := func(s string) *config.File {
		f, err := config.Parse([]byte("quota_manager:\n  tiers:\n    free: {api_calls_per_hour: 10}\n" + s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	old := parse("")
	if got := restartOnly(old, parse("")); len(got) != 0 {
		t.Errorf("restartOnly(same) = %v", got)
	}
	if got := restartOnly(old, parse("server: {grpc_addr: \":7000\"}\nledger: {retention_days: 3}\n")); !slices.Equal(got, []string{"server", "ledger"}) {
		t.Errorf("restartOnly = %v, want [server ledger]", got)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
