package durable

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options // DataDir "DIR" and paths under "TMP" are rewritten
		want      string  // Desc, with DIR and TMP
		ledger    string  // the ledger file, with DIR and TMP; "" means none
		committer bool
		wantErr   string
	}{
		{name: "memory by default", want: "memory"},
		{name: "a data dir shares one file", opts: Options{DataDir: "DIR"}, want: "sqlite:DIR/ledger.db", ledger: "DIR/ledger.db"},
		{name: "sync in one file commits state with records", opts: Options{DataDir: "DIR", Sync: true},
			want: "sqlite:DIR/ledger.db", ledger: "DIR/ledger.db", committer: true},
		{name: "a ledger elsewhere moves the state to state.db", opts: Options{DataDir: "DIR", Sync: true, LedgerDSN: "TMP/other.db"},
			want: "sqlite:DIR/state.db", ledger: "TMP/other.db"},
		{name: "an explicit state path", opts: Options{Kind: KindSQLite, StatePath: "TMP/s.db"}, want: "sqlite:TMP/s.db"},
		{name: "the same file named twice", opts: Options{Kind: KindSQLite, StatePath: "TMP/one.db", LedgerDSN: "TMP/one.db", Sync: true},
			want: "sqlite:TMP/one.db", ledger: "TMP/one.db", committer: true},
		{name: "explicit memory keeps the ledger", opts: Options{DataDir: "DIR", Kind: KindMemory}, want: "memory", ledger: "DIR/ledger.db"},
		{name: "sqlite without a file", opts: Options{Kind: KindSQLite}, wantErr: ErrNoStatePath.Error()},
		{name: "unknown kind", opts: Options{Kind: "etcd"}, wantErr: `state store kind "etcd": want memory, sqlite or redis`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "data")
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			path := strings.NewReplacer("DIR", dir, "TMP", tmp)
			o := tt.opts
			o.DataDir, o.StatePath, o.LedgerDSN = path.Replace(o.DataDir), path.Replace(o.StatePath), path.Replace(o.LedgerDSN)
			b, err := Open(context.Background(), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open = %v, want an error saying %q", err, tt.wantErr)
				}
				if tt.wantErr == ErrNoStatePath.Error() && !errors.Is(err, ErrNoStatePath) {
					t.Errorf("Open = %v, want ErrNoStatePath", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			logger := slog.New(slog.DiscardHandler)
			defer b.Close(context.Background(), logger)
			if want := path.Replace(tt.want); b.Desc != want || (b.Committer != nil) != tt.committer || b.Sync != o.Sync {
				t.Errorf("Desc %q committer %v sync %v; want %q %v %v", b.Desc, b.Committer != nil, b.Sync, want, tt.committer, o.Sync)
			}
			if tt.committer && b.Store != b.Committer {
				t.Error("the engine's Store is not the Committer, so deferred state would not be loaded back")
			}
			if _, ok := b.Store.(engine.PendingStore); strings.HasPrefix(b.Desc, "sqlite:") && !ok {
				t.Errorf("the engine's Store %T is not an engine.PendingStore: pending settlements would not survive a restart", b.Store)
			}
			if (b.Ledger != nil) != (tt.ledger != "") || (b.Writer != nil) != (tt.ledger != "") {
				t.Fatalf("ledger %v writer %v, want both %v", b.Ledger != nil, b.Writer != nil, tt.ledger != "")
			}
			if tt.ledger != "" {
				if _, err := os.Stat(path.Replace(tt.ledger)); err != nil {
					t.Errorf("the ledger is not where the options say: %v", err)
				}
			}
			b.Close(context.Background(), logger) // and again, deferred: Close is idempotent
		})
	}
}
