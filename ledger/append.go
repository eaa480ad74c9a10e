package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/quotagate/quotagate/engine"
)

// maxParams bounds the placeholders of one statement, well under the
// limits of both back ends (SQLite 32766, PostgreSQL 65535).
const maxParams = 4000

// Append adds recs to the end of the chain, as blocks of at most
// blockRecords records, in one transaction, and their usage to the
// rollups pending in memory (folded into the rollup tables by
// FoldRollups, in a later transaction that moves a watermark with them,
// so that a crash loses none and counts none twice). It sets each
// record's Seq, PrevHash and Hash and normalizes its times to UTC. Several
// processes may append to one database: each transaction holds the chain
// head until it commits.
func (l *Ledger) Append(ctx context.Context, recs []Record) (err error) {
	if len(recs) == 0 {
		return nil
	}
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return l.wrap("append: begin", err)
	}
	if err := l.appendTx(ctx, tx, recs); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return l.wrap("append: commit", err)
	}
	pace := engine.PacerFrom(ctx)
	pace.Step()
	subjects := 0
	for part := range slices.Chunk(recs, rollupStep) {
		subjects = l.pending.add(part[0].Seq, part[len(part)-1].Seq, part)
		pace.Step()
	}
	l.foldIfLarge(ctx, subjects)
	return nil
}

// AppendTx is Append within tx, a write transaction on a database that
// holds this ledger: for committing records atomically with other state
// in the same SQLite file (see store/sqlite's SaveWith). The caller
// commits or rolls back tx. The records' usage reaches the rollups at the
// next FoldRollups, which reads it from the chain.
func (l *Ledger) AppendTx(ctx context.Context, tx *sql.Tx, recs []Record) error {
	return l.appendTx(ctx, tx, recs)
}

func (l *Ledger) appendTx(ctx context.Context, tx *sql.Tx, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var headSeq int64
	var headHash string
	q := `SELECT head_seq, head_hash FROM ledger_chain WHERE id = 1` + l.dialect.lockHead
	if err := tx.QueryRowContext(ctx, q).Scan(&headSeq, &headHash); err != nil {
		return l.wrap("append: read chain head", err)
	}
	buf := linesPool.Get().(*[]byte)
	defer linesPool.Put(buf)
	packed := linesPool.Get().(*[]byte)
	defer linesPool.Put(packed)
	pace := engine.PacerFrom(ctx)
	for part := range slices.Chunk(recs, blockRecords) {
		blk := chainBlock((*buf)[:0], part, headSeq, headHash, pace)
		*buf = blk.lines
		// SQLite keeps the lines compressed (pack.go) and copies the bytes
		// as they are; PostgreSQL's TEXT wants a string.
		var lines any
		if l.dialect.mark == sqliteDialect.mark {
			*packed = packLines(*packed, blk.lines)
			lines = *packed
		} else {
			lines = string(blk.lines)
		}
		pace.Step()
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_blocks (first_seq, last_seq, first_ns, last_ns, records)
			VALUES ($1, $2, $3, $4, $5)`, blk.firstSeq, blk.lastSeq, blk.firstNS, blk.lastNS, lines); err != nil {
			return l.wrap("append: insert block", err)
		}
		headSeq, headHash = blk.lastSeq, part[len(part)-1].Hash
		pace.Step()
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ledger_chain SET head_seq = $1, head_hash = $2 WHERE id = 1`,
		headSeq, headHash); err != nil {
		return l.wrap("append: move chain head", err)
	}
	return nil
}

// blockRecords bounds the records of one block row. An append of more is
// stored as several blocks, in one transaction, so that encoding,
// compressing and inserting each is a short step that a Pacer can pause
// after (an insert of 600 records' lines kept the processor for over a
// millisecond), and so that reading one record decompresses at most this
// many.
const blockRecords = 128

// rollupStep is how many records' usage Append adds to the pending
// rollups between two steps of its Pacer (about 4 µs a record).
const rollupStep = 32

// block is a batch of records ready to store.
type block struct {
	firstSeq, lastSeq, firstNS, lastNS int64
	lines                              []byte
}

// linesPool holds the buffers blocks are encoded in, so that a batch
// neither grows a fresh one nor copies it into a string.
var linesPool = sync.Pool{New: func() any { return new([]byte) }}

// chainBlock numbers and links recs after the record (seq, hash), and
// encodes them as block lines, "<hash> <prev_hash or -> <json>\n",
// appended to buf.
func chainBlock(buf []byte, recs []Record, seq int64, hash string, pace *engine.Pacer) block {
	blk := block{firstSeq: seq + 1, firstNS: math.MaxInt64, lastNS: math.MinInt64}
	// hashed is "<prev_hash>\n<body>", what the hash covers, in one
	// buffer so that it is hashed in one call without allocating.
	hashed := make([]byte, 0, 1024)
	var hexSum [2 * sha256.Size]byte
	for i := range recs {
		if i%32 == 31 {
			pace.Step()
		}
		r := &recs[i]
		seq++
		r.Seq, r.PrevHash = seq, hash
		normalizeTimes(r)
		hashed = append(append(hashed[:0], r.PrevHash...), '\n')
		hashed = appendRecord(hashed, r)
		body := hashed[len(r.PrevHash)+1:]
		sum := sha256.Sum256(hashed)
		hex.Encode(hexSum[:], sum[:])
		buf = append(buf, hexSum[:]...)
		buf = append(buf, ' ')
		if r.PrevHash == "" {
			buf = append(buf, '-')
		} else {
			buf = append(buf, r.PrevHash...)
		}
		buf = append(buf, ' ')
		buf = append(buf, body...)
		buf = append(buf, '\n')
		r.Hash = string(hexSum[:])
		hash = r.Hash
		ns := r.Time.UnixNano()
		blk.firstNS, blk.lastNS = min(blk.firstNS, ns), max(blk.lastNS, ns)
	}
	blk.lastSeq, blk.lines = seq, buf
	return blk
}

// writeLine appends one block line, as chainBlock does; for tests that
// forge records.
func writeLine(sb *strings.Builder, hash, prev, body string) {
	if prev == "" {
		prev = "-"
	}
	sb.WriteString(hash)
	sb.WriteByte(' ')
	sb.WriteString(prev)
	sb.WriteByte(' ')
	sb.WriteString(body)
	sb.WriteByte('\n')
}

// parseLine splits a block line into its hash, previous hash and body.
func parseLine(line string) (hash, prev, body string, ok bool) {
	hash, rest, ok1 := strings.Cut(line, " ")
	prev, body, ok2 := strings.Cut(rest, " ")
	if prev == "-" {
		prev = ""
	}
	return hash, prev, body, ok1 && ok2
}

// normalizeTimes stores r's times in UTC, the form that is hashed.
func normalizeTimes(r *Record) {
	r.Time = r.Time.UTC()
	for i := range r.Limits {
		r.Limits[i].Reset = r.Limits[i].Reset.UTC()
	}
	if r.Spill != nil {
		r.Spill.First = r.Spill.First.UTC()
		r.Spill.Last = r.Spill.Last.UTC()
	}
}

// chainHash links a record to the one before it: SHA-256 over the
// previous hash, a newline and the record's stored body, hex encoded.
func chainHash(prev, body string) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write([]byte(body))
	return hex.EncodeToString(h.Sum(nil))
}

// insertRows runs prefix + "(v1, v2, ...)" + suffix for every row of
// rows (all of one width). On PostgreSQL (mark '$') it sends many rows per
// statement, as many as maxParams allows, to save round trips. On SQLite
// (mark '?') it prepares the one-row statement once and runs it per row:
// there are no round trips, and parsing a statement of thousands of
// values costs more than running a prepared one thousands of times (and
// a prepared statement of 64 rows measured twice as slow per row, too).
func insertRows(ctx context.Context, tx *sql.Tx, mark byte, prefix string, rows [][]any, suffix string) error {
	if len(rows) == 0 {
		return nil
	}
	width := len(rows[0])
	if mark == '?' {
		stmt, err := tx.PrepareContext(ctx, prefix+"("+strings.Repeat("?,", width-1)+"?)"+suffix)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, row := range rows {
			if _, err := stmt.ExecContext(ctx, row...); err != nil {
				return err
			}
		}
		return nil
	}
	per := max(1, maxParams/width)
	var sb strings.Builder
	args := make([]any, 0, min(len(rows), per)*width)
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		sb.Reset()
		args = args[:0]
		sb.WriteString(prefix)
		for i, row := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for j := range row {
				if j > 0 {
					sb.WriteByte(',')
				}
				sb.WriteByte('$')
				sb.WriteString(strconv.Itoa(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, row...)
		}
		sb.WriteString(suffix)
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

func (l *Ledger) wrap(what string, err error) error {
	return fmt.Errorf("ledger: %s (%s): %w", what, l.where, err)
}
