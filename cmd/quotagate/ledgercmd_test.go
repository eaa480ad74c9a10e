package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/s2"

	"github.com/quotagate/quotagate/ledger"
)

var ledgerT0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// testLedger writes a small ledger: alice (standard) and bob (enterprise),
// one charge each per hour for three hours, plus a rejection of alice.
func testLedger(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	ctx := context.Background()
	l, err := ledger.Open(ctx, path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recs []ledger.Record
	for h := range 3 {
		for _, who := range []struct{ subject, tier string }{{"alice", "standard"}, {"bob", "enterprise"}} {
			recs = append(recs, ledger.Record{
				ID: uuid.Must(uuid.NewV7()), Time: ledgerT0.Add(time.Duration(h) * time.Hour), Kind: ledger.KindCharge,
				Subject: who.subject, Team: "ops", Tier: who.tier, Action: "translate",
				Units: 100, Cost: 10, Charged: 10, Allowed: true, Reason: "ok", BalanceOwner: who.subject,
			})
		}
	}
	recs = append(recs, ledger.Record{ID: uuid.Must(uuid.NewV7()), Time: ledgerT0, Kind: ledger.KindRejection,
		Subject: "alice", Team: "ops", Tier: "standard", Action: "translate", Reason: "window_exceeded"})
	if err := l.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return path
}

func noEnv(string) string { return "" }

func TestRunUsage(t *testing.T) {
	path := testLedger(t)
	base := []string{"--ledger", path, "--from", "2026-05-04", "--to", "2026-05-05"}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{
			name: "table by hour",
			args: []string{"--by", "hour"},
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 4 || !strings.Contains(lines[0], "REJECTIONS") ||
					strings.Join(strings.Fields(lines[1]), " ") != "2026-05-04T10:00Z 2 200 20 1 0 0 0" {
					t.Fatalf("table:\n%s", out)
				}
			},
		},
		{
			name: "csv for one subject by day",
			args: []string{"--subject", "alice", "--format", "csv"},
			check: func(t *testing.T, out string) {
				recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
				if err != nil || len(recs) != 2 || strings.Join(recs[1], ",") != "2026-05-04,3,300,30,1,0,0,0" {
					t.Fatalf("csv = %q, %v", recs, err)
				}
			},
		},
		{
			name: "json for a tier by month",
			args: []string{"--tier", "enterprise", "--by", "month", "--format", "json"},
			check: func(t *testing.T, out string) {
				var rows []ledger.Row
				if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Tokens != 30 || rows[0].Calls != 3 {
					t.Fatalf("json = %s (%v)", out, err)
				}
			},
		},
		{
			name: "json with nothing found",
			args: []string{"--subject", "nobody", "--format", "json"},
			check: func(t *testing.T, out string) {
				if strings.TrimSpace(out) != "[]" {
					t.Fatalf("json = %q, want []", out)
				}
			},
		},
		{
			name: "billing csv",
			args: []string{"--by", "month", "--format", "csv", "--prices", "standard=0.5,enterprise=0.25"},
			check: func(t *testing.T, out string) {
				want := "period,subject,tier,tokens,price,amount,refunded,extra,owed,owed_amount\n" +
					"2026-05,alice,standard,30,0.5,15.0000,0,0,0,0.0000\n2026-05,bob,enterprise,30,0.25,7.5000,0,0,0,0.0000\n"
				if out != want {
					t.Fatalf("billing csv =\n%s\nwant\n%s", out, want)
				}
			},
		},
		{
			name: "billing table has a total",
			args: []string{"--prices", "standard=0.5,enterprise=0.25"},
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "22.5000") {
					t.Fatalf("billing table without total 22.5:\n%s", out)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := runUsage(context.Background(), append(append([]string{}, base...), tc.args...), noEnv, &stdout, &stderr); err != nil {
				t.Fatalf("runUsage: %v (stderr %s)", err, stderr.String())
			}
			tc.check(t, stdout.String())
		})
	}
}

func TestRunUsageErrors(t *testing.T) {
	path := testLedger(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no ledger", args: nil, want: "--ledger"},
		{name: "bad period", args: []string{"--ledger", path, "--by", "week"}, want: "--by"},
		{name: "bad format", args: []string{"--ledger", path, "--format", "xml"}, want: "--format"},
		{name: "bad from", args: []string{"--ledger", path, "--from", "yesterday"}, want: "RFC 3339"},
		{name: "from after to", args: []string{"--ledger", path, "--from", "2026-06", "--to", "2026-05"}, want: "not before"},
		{name: "bad prices", args: []string{"--ledger", path, "--prices", "standard"}, want: "tier=price"},
		{name: "missing price", args: []string{"--ledger", path, "--from", "2026-05", "--to", "2026-06", "--prices", "standard=1"}, want: `"enterprise"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runUsage(context.Background(), tc.args, noEnv, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runUsage(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestRunLedgerVerify(t *testing.T) {
	path := testLedger(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if err := runLedger(ctx, []string{"verify", "--ledger", path}, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !strings.HasPrefix(stdout.String(), "ok: 7 records") {
		t.Fatalf("verify printed %q", stdout.String())
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	tamperBlocks(t, db, func(lines string) string {
		return strings.Replace(lines, `"seq":3,`, `"seq":3,"admin":{"actor":"x"},`, 1)
	})
	db.Close()
	stdout.Reset()
	err = runLedger(ctx, []string{"verify"}, func(k string) string {
		if k == "QUOTAGATE_LEDGER" {
			return path
		}
		return ""
	}, &stdout, &stderr)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(stdout.String(), "seq 3") {
		t.Fatalf("verify of a tampered ledger = %v, printed %q; want exit 1 naming seq 3", err, stdout.String())
	}

	if err := runLedger(ctx, []string{"rewrite"}, noEnv, &stdout, &stderr); !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("unknown subcommand = %v, want a usage error", err)
	}
}

// tamperBlocks rewrites the lines of every ledger block with edit, as a
// forger with write access to the file would: SQLite blocks are stored
// S2-compressed after a 0x00 byte (ledger/pack.go), and written back as
// text, which the ledger reads too.
func tamperBlocks(t *testing.T, db *sql.DB, edit func(lines string) string) {
	t.Helper()
	rows, err := db.Query(`SELECT first_seq, records FROM ledger_blocks`)
	if err != nil {
		t.Fatal(err)
	}
	edits := map[int64]string{}
	for rows.Next() {
		var seq int64
		var stored []byte
		if err := rows.Scan(&seq, &stored); err != nil {
			t.Fatal(err)
		}
		if len(stored) > 0 && stored[0] == 0 {
			if stored, err = s2.Decode(nil, stored[1:]); err != nil {
				t.Fatal(err)
			}
		}
		edits[seq] = edit(string(stored))
	}
	rows.Close()
	for seq, lines := range edits {
		if _, err := db.Exec(`UPDATE ledger_blocks SET records = ?1 WHERE first_seq = ?2`, lines, seq); err != nil {
			t.Fatal(err)
		}
	}
}
