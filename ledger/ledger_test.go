package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/sqlite"
)

var t0 = time.Date(2026, 1, 31, 22, 0, 0, 0, time.UTC)

// charge returns a charge (allowed) or rejection record.
func charge(subject, team, tier, action string, at time.Time, allowed bool, units, charged int64) Record {
	kind := KindRejection
	if allowed {
		kind = KindCharge
	} else {
		charged = 0
	}
	return Record{
		ID: idAt(at), Time: at, Kind: kind,
		Subject: subject, Team: team, Tier: tier, Action: action,
		Units: units, Cost: charged, Charged: charged, Allowed: allowed,
		BalanceOwner: subject, HasBalance: true, Balance: 1000 - charged,
		Limits:  []LimitCharge{{Name: "hour", Period: "hour", Limit: 10, Used: 3, Remaining: 7, Reset: at.Add(time.Hour)}},
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

// idAt returns a UUIDv7 carrying the time at, as the engine makes
// decision ids from the decision time.
func idAt(at time.Time) uuid.UUID { return uuid.Must(newIDAt(at)) }

func someRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = charge(fmt.Sprintf("user-%d", i%3), "ops", "standard", "translate",
			t0.Add(time.Duration(i)*time.Minute), i%4 != 3, int64(10*i), int64(i+1))
	}
	return recs
}

func TestAppendVerify(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		res, err := l.Verify(ctx)
		if err != nil || !res.OK || res.Records != 0 {
			t.Fatalf("Verify(empty) = %+v, %v; want ok with 0 records", res, err)
		}
		recs := someRecords(10)
		if err := l.Append(ctx, recs[:4]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := l.Append(ctx, recs[4:]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		for i, r := range recs {
			if r.Seq != int64(i+1) || r.Hash == "" || (i > 0 && r.PrevHash != recs[i-1].Hash) {
				t.Fatalf("record %d: seq %d prev %q hash %q; want a linked chain", i, r.Seq, r.PrevHash, r.Hash)
			}
		}
		res, err = l.Verify(ctx)
		if err != nil || !res.OK || res.Records != 10 || res.LastSeq != 10 {
			t.Fatalf("Verify = %+v, %v; want ok with 10 records", res, err)
		}
	})
}

func TestVerifyNamesTampering(t *testing.T) {
	alter := func(n int, from, to string) func(lines []string) []string {
		return func(lines []string) []string {
			lines[n-1] = strings.Replace(lines[n-1], from, to, 1)
			return lines
		}
	}
	rehash := func(n int) func(lines []string) []string {
		return func(lines []string) []string {
			_, prev, body, _ := parseLine(lines[n-1])
			var sb strings.Builder
			writeLine(&sb, chainHash(prev, body), prev, body)
			lines[n-1] = strings.TrimSuffix(sb.String(), "\n")
			return lines
		}
	}
	remove := func(ns ...int) func(lines []string) []string {
		return func(lines []string) []string {
			for i := len(ns) - 1; i >= 0; i-- {
				lines = slices.Delete(lines, ns[i]-1, ns[i])
			}
			return lines
		}
	}
	tests := []struct {
		name    string
		tamper  []func(lines []string) []string // edits of the first block's lines
		sql     string                          // or a statement to run
		wantSeq int64
		wantIn  string
	}{
		{name: "body altered", tamper: lines(alter(5, `"units":40`, `"units":41`)), wantSeq: 5, wantIn: "does not match its hash"},
		{name: "hash altered", tamper: lines(alter(5, "a", "b")), wantSeq: 5, wantIn: "altered"},
		{name: "body altered and re-hashed", tamper: lines(alter(5, `"units":40`, `"units":41`), rehash(5)), wantSeq: 5, wantIn: "next record's link"},
		{name: "line garbled", tamper: lines(alter(5, "{", "")), wantSeq: 5, wantIn: "not a ledger line"},
		{name: "record removed", tamper: lines(remove(5)), wantSeq: 5, wantIn: "record 5 was removed"},
		{name: "records removed", tamper: lines(remove(5, 6, 7)), wantSeq: 5, wantIn: "records 5 to 7 were removed"},
		{name: "first removed", tamper: lines(remove(1)), wantSeq: 1, wantIn: "removed"},
		{name: "last of a block removed", tamper: lines(remove(10)), wantSeq: 10, wantIn: "removed"},
		{name: "first block removed", sql: `DELETE FROM ledger_blocks WHERE first_seq = 1`, wantSeq: 1, wantIn: "records 1 to 10 were removed"},
		{name: "last block removed", sql: `DELETE FROM ledger_blocks WHERE first_seq = 11`, wantSeq: 11, wantIn: "removed from the end"},
		{name: "last altered and re-hashed", sql: "rehash-last", wantSeq: 15, wantIn: "recorded head"},
	}
	backends(t, func(t *testing.T, dsn func() string) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				l := openLedger(t, dsn())
				if err := l.Append(ctx, someRecords(10)); err != nil {
					t.Fatalf("Append: %v", err)
				}
				if err := l.Append(ctx, someRecords(5)); err != nil {
					t.Fatalf("Append: %v", err)
				}
				for _, edit := range tc.tamper {
					editBlock(t, l, 1, edit)
				}
				switch tc.sql {
				case "":
				case "rehash-last":
					editBlock(t, l, 11, func(lines []string) []string {
						lines = alter(5, `"units":40`, `"units":41`)(lines)
						return rehash(5)(lines)
					})
				default:
					if _, err := l.db.ExecContext(ctx, tc.sql); err != nil {
						t.Fatalf("%s: %v", tc.sql, err)
					}
				}
				res, err := l.Verify(ctx)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.OK || res.BadSeq != tc.wantSeq || !strings.Contains(res.Problem, tc.wantIn) {
					t.Fatalf("Verify = %+v (%s); want failure at seq %d mentioning %q", res, res, tc.wantSeq, tc.wantIn)
				}
			})
		}
	})
}

func lines(fs ...func([]string) []string) []func([]string) []string { return fs }

// editBlock rewrites the lines of the block starting at firstSeq, as a
// forger with write access to the database would.
func editBlock(t *testing.T, l *Ledger, firstSeq int64, edit func(lines []string) []string) {
	t.Helper()
	var stored []byte
	if err := l.db.QueryRow(`SELECT records FROM ledger_blocks WHERE first_seq = $1`, firstSeq).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	recs, err := unpackLines(stored)
	if err != nil {
		t.Fatal(err)
	}
	ls := edit(strings.Split(strings.TrimSuffix(recs, "\n"), "\n"))
	var edited any = strings.Join(ls, "\n") + "\n"
	if len(stored) > 0 && stored[0] == packedBlock {
		edited = packLines(nil, []byte(edited.(string))) // stored as it was
	}
	if _, err := l.db.Exec(`UPDATE ledger_blocks SET records = $1 WHERE first_seq = $2`, edited, firstSeq); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsChainValid(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		recs := make([]Record, 10)
		for i := range recs {
			recs[i] = charge("alice", "", "standard", "", t0.Add(time.Duration(i)*time.Hour), true, 1, 1)
		}
		for i := range recs { // one block per hour: retention removes whole blocks
			if err := l.Append(ctx, recs[i:i+1]); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		n, err := l.Prune(ctx, t0.Add(4*time.Hour))
		if err != nil || n != 4 {
			t.Fatalf("Prune = %d, %v; want 4 records removed", n, err)
		}
		res, err := l.Verify(ctx)
		if err != nil || !res.OK || res.Records != 6 || res.FirstSeq != 5 {
			t.Fatalf("Verify after Prune = %+v, %v; want ok, 6 records from seq 5", res, err)
		}
		rows, err := l.Usage(ctx, Query{Subject: "alice", From: t0, To: t0.Add(10 * time.Hour), By: GrainHour})
		if err != nil || len(rows) != 6 {
			t.Fatalf("hourly usage after Prune = %d rows, %v; want 6", len(rows), err)
		}
		days, err := l.Usage(ctx, Query{Subject: "alice", From: t0, To: t0.Add(10 * time.Hour), By: GrainDay})
		if err != nil || sumCalls(days) != 10 {
			t.Fatalf("daily usage after Prune = %+v, %v; want all 10 calls kept", days, err)
		}
		if err := l.Append(ctx, someRecords(2)); err != nil {
			t.Fatalf("Append after Prune: %v", err)
		}
		if res, err := l.Verify(ctx); err != nil || !res.OK {
			t.Fatalf("Verify after Prune and Append = %+v, %v", res, err)
		}
	})
}

func sumCalls(rows []Row) (n int64) {
	for _, r := range rows {
		n += r.Calls
	}
	return n
}

// TestConcurrentAppenders appends from two handles on one database, as two
// replicas would: the chain must stay one unbroken sequence.
func TestConcurrentAppenders(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		d := dsn()
		ls := []*Ledger{openLedger(t, d), openLedger(t, d)}
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 4 {
			wg.Go(func() {
				for range 10 {
					if err := ls[i%2].Append(ctx, someRecords(5)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("Append: %v", err)
		}
		res, err := ls[0].Verify(ctx)
		if err != nil || !res.OK || res.Records != 200 {
			t.Fatalf("Verify = %+v, %v; want ok with 200 records", res, err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{name: "empty", dsn: "", want: "--ledger"},
		{name: "directory is a file", dsn: filepath.Join(file, "ledger.db"), want: file},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(context.Background(), tc.dsn, Options{})
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestCloseIdempotent(t *testing.T) {
	l := openLedger(t, filepath.Join(t.TempDir(), "l.db"))
	for range 3 {
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestFindAndScan(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		recs := someRecords(20)
		if err := l.Append(ctx, recs[:12]); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(ctx, recs[12:]); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			id     uuid.UUID
			wantOK bool
		}{
			{name: "in the first block", id: recs[3].ID, wantOK: true},
			{name: "in the second block", id: recs[17].ID, wantOK: true},
			{name: "unknown", id: uuid.Must(uuid.NewV7())},
			{name: "not a v7 id", id: uuid.New()},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, ok, err := l.Find(ctx, tc.id)
				if err != nil || ok != tc.wantOK {
					t.Fatalf("Find = ok %v, %v; want ok %v", ok, err, tc.wantOK)
				}
				if ok && (got.ID != tc.id || got.Hash == "" || got.Seq == 0) {
					t.Fatalf("Find = %+v", got)
				}
			})
		}
		var seqs []int64
		if err := l.Scan(ctx, func(r Record) bool { seqs = append(seqs, r.Seq); return len(seqs) < 15 }); err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 15 || seqs[0] != 1 || seqs[14] != 15 {
			t.Fatalf("Scan stopped early at %v, want seq 1 to 15", seqs)
		}
	})
}

// TestVerifyWhileAppending checks that Verify reads a consistent snapshot:
// records committed during the walk are not mistaken for tampering.
func TestVerifyWhileAppending(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		d := dsn()
		writer, reader := openLedger(t, d), openLedger(t, d)
		done := make(chan error, 1)
		go func() {
			for range 20 {
				if err := writer.Append(ctx, someRecords(50)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for finished := false; !finished; {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				finished = true
			default:
			}
			if res, err := reader.Verify(ctx); err != nil || !res.OK {
				t.Fatalf("Verify during appends = %+v, %v", res, err)
			}
		}
	})
}

// TestOpenOnSharedFile: a ledger opened on the state store's File writes
// through it and outlives the store's share, whichever closes first; a
// File of another path is refused before anything is written.
func TestOpenOnSharedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	f, err := sqlite.OpenFile(path, false, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, filepath.Join(dir, "other.db"), Options{File: f}); err == nil || !strings.Contains(err.Error(), "shared file") {
		t.Fatalf("Open with another path's File: %v, want an error naming the shared file", err)
	}
	l, err := Open(ctx, path, Options{File: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil { // the store's share goes first
		t.Fatal(err)
	}
	if err := l.Append(ctx, []Record{{Kind: KindCharge, Time: time.Now(), Subject: "alice", Charged: 1}}); err != nil {
		t.Fatalf("Append after the other holder closed: %v", err)
	}
	if res, err := l.Verify(ctx); err != nil || !res.OK || res.Records != 1 {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAppendSplitsLargeBatches: an Append of more than blockRecords
// records stores them as blocks of at most blockRecords, in one
// transaction, pausing its Pacer between them; the chain, lookups and
// rollups are as if it were one block.
func TestAppendSplitsLargeBatches(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		l := openLedger(t, dsn())
		// A Pacer that pauses at every step, whatever GOMAXPROCS is.
		pace := &engine.Pacer{Slice: time.Nanosecond, Pause: time.Microsecond, MaxProcs: 1 << 20}
		ctx := engine.WithPacer(context.Background(), pace)
		n := 2*blockRecords + 44
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = charge(fmt.Sprintf("user-%d", i%7), "ops", "standard", "translate",
				t0.Add(time.Duration(i)*time.Second), i%5 != 4, int64(i), int64(i%9+1))
		}
		if err := l.Append(ctx, recs[:3]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := l.Append(ctx, recs[3:]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if pace.Pauses() == 0 {
			t.Error("the Pacer never paused: Append takes no steps")
		}

		rows, err := l.db.QueryContext(context.Background(), `SELECT first_seq, last_seq FROM ledger_blocks ORDER BY first_seq`)
		if err != nil {
			t.Fatal(err)
		}
		var got [][2]int64
		for rows.Next() {
			var b [2]int64
			if err := rows.Scan(&b[0], &b[1]); err != nil {
				t.Fatal(err)
			}
			got = append(got, b)
		}
		rows.Close()
		want := [][2]int64{{1, 3}, {4, 131}, {132, 259}, {260, int64(n)}}
		if !slices.Equal(got, want) {
			t.Fatalf("blocks (first_seq, last_seq) = %v; want %v", got, want)
		}
		for i, r := range recs {
			if r.Seq != int64(i+1) || (i > 0 && r.PrevHash != recs[i-1].Hash) {
				t.Fatalf("record %d: seq %d, prev %q; want %d linked to the one before", i, r.Seq, r.PrevHash, i+1)
			}
		}
		res, err := l.Verify(context.Background())
		if err != nil || !res.OK || res.Records != int64(n) {
			t.Fatalf("Verify = %+v, %v; want ok with %d records", res, err, n)
		}
		for _, i := range []int{0, 3, 130, 131, 259, n - 1} {
			r, ok, err := l.Find(context.Background(), recs[i].ID)
			if err != nil || !ok || r.Seq != recs[i].Seq || r.Hash != recs[i].Hash {
				t.Fatalf("Find(record %d) = seq %d hash %q, %v, %v; want seq %d", i, r.Seq, r.Hash, ok, err, recs[i].Seq)
			}
		}
		q := Query{From: t0, To: t0.Add(time.Hour), By: GrainHour}
		usage, err := l.Usage(context.Background(), q)
		if err != nil {
			t.Fatalf("Usage: %v", err)
		}
		if want := expectedUsage(recs, q); !reflect.DeepEqual(usage, want) {
			t.Fatalf("Usage = %+v; want %+v", usage, want)
		}
	})
}
