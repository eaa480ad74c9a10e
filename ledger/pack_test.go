package ledger

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlocksStoredPacked: SQLite keeps each block compressed, at well
// under half its lines' size; a file that also holds blocks as text, as
// earlier versions wrote them, reads and verifies whole; a damaged packed
// block fails Verify naming it, and reads as corrupt, without a panic or
// an allocation of what it claims.
func TestBlocksStoredPacked(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t, filepath.Join(t.TempDir(), "ledger.db"))
	// The first block as an earlier version stored it: text.
	first := someRecords(10)
	blk := chainBlock(nil, first, 0, "", nil)
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_blocks (first_seq, last_seq, first_ns, last_ns, records) VALUES ($1, $2, $3, $4, $5)`,
		blk.firstSeq, blk.lastSeq, blk.firstNS, blk.lastNS, string(blk.lines)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ledger_chain SET head_seq = $1, head_hash = $2 WHERE id = 1`, blk.lastSeq, first[9].Hash); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, someRecords(40)); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := l.db.QueryRow(`SELECT records FROM ledger_blocks WHERE first_seq = 11`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	lines, err := unpackLines(stored)
	if err != nil || stored[0] != packedBlock || len(stored)*2 > len(lines) {
		t.Fatalf("stored block: %d bytes for %d of lines (%v), marked %#x; want packed to under half", len(stored), len(lines), err, stored[0])
	}
	n := 0
	if err := l.Scan(ctx, func(Record) bool { n++; return true }); err != nil || n != 50 {
		t.Fatalf("Scan: %d records, %v; want 50", n, err)
	}
	if res, err := l.Verify(ctx); err != nil || !res.OK || res.Records != 50 {
		t.Fatalf("Verify = %+v, %v", res, err)
	}

	for name, damaged := range map[string][]byte{
		"payload flipped": append(stored[:len(stored)-8:len(stored)-8], bytes.Repeat([]byte{0xff}, 8)...),
		"cut short":       stored[:len(stored)/2],
		"huge claim":      {packedBlock, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00},
		"empty":           {packedBlock, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := l.db.Exec(`UPDATE ledger_blocks SET records = $1 WHERE first_seq = 11`, damaged); err != nil {
				t.Fatal(err)
			}
			res, err := l.Verify(ctx)
			if err != nil || res.OK || res.BadSeq != 11 || !strings.Contains(res.Problem, "cannot be read") {
				t.Fatalf("Verify = %+v (%s), %v; want the block at 11 named", res, res, err)
			}
			if err := l.Scan(ctx, func(Record) bool { return true }); err == nil {
				t.Fatal("Scan over a damaged block succeeded")
			}
		})
	}
}

// FuzzUnpackLines: reading any stored block never panics, and lines that
// read back pack to a block that reads back the same.
func FuzzUnpackLines(f *testing.F) {
	blk := chainBlock(nil, someRecords(3), 0, "", nil)
	f.Add(packLines(nil, blk.lines))
	f.Add(blk.lines)
	f.Add([]byte{packedBlock, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, stored []byte) {
		lines, err := unpackLines(stored)
		if err != nil || lines == "" {
			return
		}
		again, err := unpackLines(packLines(nil, []byte(lines)))
		if err != nil || again != lines {
			t.Fatalf("repacked lines read back as %q, %v; want %q", again, err, lines)
		}
	})
}
