package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// VerifyResult is the outcome of Verify. When OK is false, BadSeq and
// BadID name the first record found altered or removed and Problem says
// what is wrong.
type VerifyResult struct {
	OK bool
	// Records is how many records were checked; FirstSeq and LastSeq are
	// the chain's ends (FirstSeq - 1 records were removed by retention).
	Records  int64
	FirstSeq int64
	LastSeq  int64

	BadSeq  int64
	BadID   string // empty when the record is gone
	Problem string
}

// String is a one-line summary for people.
func (v VerifyResult) String() string {
	if v.OK {
		if v.Records == 0 {
			return "ok: the ledger is empty"
		}
		return fmt.Sprintf("ok: %d records, seq %d to %d, chain intact", v.Records, v.FirstSeq, v.LastSeq)
	}
	id := ""
	if v.BadID != "" {
		id = " (id " + v.BadID + ")"
	}
	return fmt.Sprintf("FAILED at record seq %d%s: %s", v.BadSeq, id, v.Problem)
}

// verifyPage is how many blocks Verify reads per query.
const verifyPage = 64

// link is the last record Verify accepted.
type link struct {
	seq  int64
	hash string
	id   string
}

// Verify walks the chain from its base to its head and reports the first
// record that was altered (its content no longer matches its hash, or its
// hash no longer matches the next record's link) or removed (a gap in the
// sequence, or a missing head). A non-nil error means the walk itself
// failed.
//
// Verify reads one consistent snapshot, so it may run while records are
// appended and pruned.
func (l *Ledger) Verify(ctx context.Context) (VerifyResult, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if l.dialect.name == postgresDialect.name {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := l.db.BeginTx(ctx, opts)
	if err != nil {
		return VerifyResult{}, l.wrap("verify: begin", err)
	}
	defer tx.Rollback()
	var headSeq, baseSeq int64
	var headHash, baseHash string
	if err := tx.QueryRowContext(ctx, `SELECT head_seq, head_hash, base_seq, base_hash FROM ledger_chain WHERE id = 1`).
		Scan(&headSeq, &headHash, &baseSeq, &baseHash); err != nil {
		return VerifyResult{}, l.wrap("verify: read chain ends", err)
	}
	res := VerifyResult{FirstSeq: baseSeq + 1}
	prev := link{seq: baseSeq, hash: baseHash}
	after := baseSeq
	for {
		blocks, err := l.readBlocks(ctx, tx, after, verifyPage)
		if err != nil {
			return VerifyResult{}, err
		}
		for _, b := range blocks {
			n, bad := checkBlock(b, &prev)
			res.Records += n
			if bad != nil {
				bad.Records, bad.FirstSeq, bad.LastSeq = res.Records, res.FirstSeq, headSeq
				return *bad, nil
			}
			after = b.firstSeq
		}
		if len(blocks) < verifyPage {
			break
		}
	}
	res.LastSeq = prev.seq
	switch {
	case prev.seq < headSeq:
		res.BadSeq, res.Problem = prev.seq+1, fmt.Sprintf("records %d to %d were removed from the end of the chain", prev.seq+1, headSeq)
	case prev.seq > headSeq:
		res.BadSeq, res.Problem = headSeq+1, fmt.Sprintf("records after the recorded head (seq %d) were added outside the ledger", headSeq)
	case prev.hash != headHash:
		res.BadSeq, res.BadID, res.Problem = prev.seq, prev.id, "the last record was altered: its hash differs from the recorded head"
	default:
		res.OK = true
	}
	return res, nil
}

// storedBlock is a row of ledger_blocks; broken says why its stored
// lines could not be read.
type storedBlock struct {
	firstSeq, lastSeq int64
	lines             string
	broken            error
}

// checkBlock checks b's records after prev, advancing prev past each good
// one. It returns how many records it accepted and the first failure.
func checkBlock(b storedBlock, prev *link) (int64, *VerifyResult) {
	if b.broken != nil {
		return 0, &VerifyResult{BadSeq: b.firstSeq, Problem: fmt.Sprintf(
			"the block of records %d to %d cannot be read (altered): %v", b.firstSeq, b.lastSeq, b.broken)}
	}
	var n int64
	lines := b.lines
	for lines != "" {
		line, rest, _ := strings.Cut(lines, "\n")
		lines = rest
		if bad := checkLine(line, prev); bad != nil {
			return n, bad
		}
		n++
	}
	if prev.seq != b.lastSeq {
		return n, &VerifyResult{BadSeq: prev.seq + 1, Problem: fmt.Sprintf(
			"the block of records %d to %d ends at %d: records were removed", b.firstSeq, b.lastSeq, prev.seq)}
	}
	return n, nil
}

// checkLine verifies one record given the one before it.
func checkLine(line string, prev *link) *VerifyResult {
	bad := func(seq int64, id, format string, args ...any) *VerifyResult {
		return &VerifyResult{BadSeq: seq, BadID: id, Problem: fmt.Sprintf(format, args...)}
	}
	hash, prevHash, body, ok := parseLine(line)
	var rec Record
	if !ok || json.Unmarshal([]byte(body), &rec) != nil {
		return bad(prev.seq+1, "", "the record after %d is not a ledger line (altered)", prev.seq)
	}
	id := rec.ID.String()
	switch {
	case rec.Seq <= prev.seq:
		return bad(prev.seq+1, "", "record %d is out of order: seq %d follows %d (altered or moved)", prev.seq+1, rec.Seq, prev.seq)
	case rec.Seq == prev.seq+2:
		return bad(prev.seq+1, "", "record %d was removed (the chain jumps from %d to %d)", prev.seq+1, prev.seq, rec.Seq)
	case rec.Seq > prev.seq+2:
		return bad(prev.seq+1, "", "records %d to %d were removed (the chain jumps from %d to %d)", prev.seq+1, rec.Seq-1, prev.seq, rec.Seq)
	case chainHash(prevHash, body) != hash:
		return bad(rec.Seq, id, "its content does not match its hash (altered)")
	case prevHash != prev.hash && prev.id == "":
		return bad(rec.Seq, id, "its link to the record before does not match the chain's base (altered)")
	case prevHash != prev.hash:
		return bad(prev.seq, prev.id, "its hash does not match the next record's link (altered and re-hashed)")
	}
	*prev = link{seq: rec.Seq, hash: hash, id: id}
	return nil
}

// readBlocks reads up to limit blocks that start after seq, in order.
func (l *Ledger) readBlocks(ctx context.Context, tx *sql.Tx, after int64, limit int) ([]storedBlock, error) {
	rows, err := tx.QueryContext(ctx, `SELECT first_seq, last_seq, records
		FROM ledger_blocks WHERE first_seq > $1 ORDER BY first_seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, l.wrap("read blocks", err)
	}
	defer rows.Close()
	var out []storedBlock
	for rows.Next() {
		var b storedBlock
		var stored []byte
		if err := rows.Scan(&b.firstSeq, &b.lastSeq, &stored); err != nil {
			return nil, l.wrap("read blocks", err)
		}
		b.lines, b.broken = unpackLines(stored)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap("read blocks", err)
	}
	return out, nil
}
