package main

import (
	"context"
	"log/slog"
	"os"
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
		ledgerFlag bool   // --ledger TMP/flag.db
		want       string // Desc, with DIR for the data directory and TMP for the temp dir
		wantLedger string // the ledger file, likewise; "" means none
		wantSync   bool
		committer  bool
		wantErr    string
	}{
		{name: "memory without a data dir", want: "memory"},
		{name: "data dir shares one file", dataDir: true, want: "sqlite:DIR/ledger.db", wantLedger: "DIR/ledger.db"},
		{name: "--durability sync commits state with records", dataDir: true, durability: "sync",
			want: "sqlite:DIR/ledger.db", wantLedger: "DIR/ledger.db", wantSync: true, committer: true},
		{name: "store.durability sync", extra: "store: {durability: sync}\n", dataDir: true,
			want: "sqlite:DIR/ledger.db", wantLedger: "DIR/ledger.db", wantSync: true, committer: true},
		{name: "--durability batch overrides the file", extra: "store: {durability: sync}\n", dataDir: true, durability: "batch",
			want: "sqlite:DIR/ledger.db", wantLedger: "DIR/ledger.db"},
		{name: "--ledger wins over ledger.dsn", extra: "ledger: {dsn: /nonexistent/file.db}\n", dataDir: true, durability: "sync", ledgerFlag: true,
			want: "sqlite:DIR/state.db", wantLedger: "TMP/flag.db", wantSync: true},
		{name: "sqlite without a path", extra: "store: {kind: sqlite}\n", wantErr: "neither store.path nor --data-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			o := assembleOptions{Logger: discardLogger(), Durability: tt.durability}
			if tt.dataDir {
				o.DataDir = filepath.Join(tmp, "data")
			}
			if tt.ledgerFlag {
				o.LedgerDSN = filepath.Join(tmp, "flag.db")
			}
			b, err := openBackends(context.Background(), mustParse(t, tt.extra), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("openBackends = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background(), discardLogger())
			path := strings.NewReplacer("DIR", o.DataDir, "TMP", tmp)
			if want := path.Replace(tt.want); b.Desc != want || b.Sync != tt.wantSync || (b.Committer != nil) != tt.committer {
				t.Errorf("store %q sync %v committer %v; want %q %v %v", b.Desc, b.Sync, b.Committer != nil, want, tt.wantSync, tt.committer)
			}
			if (b.Ledger != nil) != (tt.wantLedger != "") {
				t.Fatalf("ledger open = %v, want %v", b.Ledger != nil, tt.wantLedger != "")
			}
			if tt.wantLedger != "" {
				if _, err := os.Stat(path.Replace(tt.wantLedger)); err != nil {
					t.Errorf("the ledger is not where the flags and the file say: %v", err)
				}
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
