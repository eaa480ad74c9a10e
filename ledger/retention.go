package ledger

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// Prune removes the records older than before, and the hourly rollups of
// periods that ended before it; day and month rollups are kept. Records go
// by whole blocks (appended batches), oldest first, up to the first block
// holding a record at or after before; so a few records older than before
// may stay until the next Prune. The last removed record's hash becomes
// the chain's base, so Verify still passes. It returns how many records it
// removed. Records are folded into the rollups (FoldRollups) before they
// go; Prune never removes a record the rollups do not count yet.
func (l *Ledger) Prune(ctx context.Context, before time.Time) (n int64, err error) {
	if err := l.FoldRollups(ctx); err != nil {
		return 0, err
	}
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, l.wrap("prune: begin", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	headSeq, rollupSeq, err := l.lockWatermark(ctx, tx)
	if err != nil {
		return 0, l.wrap("prune: read chain head", err)
	}
	var keep sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(first_seq) FROM ledger_blocks WHERE last_ns >= $1`,
		before.UnixNano()).Scan(&keep); err != nil {
		return 0, l.wrap("prune: find cut", err)
	}
	keepFrom := headSeq + 1
	if keep.Valid {
		keepFrom = keep.Int64
	}
	// Another process may have appended since the fold above.
	keepFrom = min(keepFrom, rollupSeq+1)
	var lastSeq int64
	var stored []byte
	err = tx.QueryRowContext(ctx, `SELECT last_seq, records FROM ledger_blocks WHERE first_seq < $1
		ORDER BY first_seq DESC LIMIT 1`, keepFrom).Scan(&lastSeq, &stored)
	var lines string
	if err == nil {
		if lines, err = unpackLines(stored); err != nil {
			err = errCorrupt
		}
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Nothing old enough.
	case err != nil:
		return 0, l.wrap("prune: read cut block", err)
	default:
		lastLine := lines[strings.LastIndexByte(strings.TrimSuffix(lines, "\n"), '\n')+1:]
		baseHash, _, _, _ := parseLine(strings.TrimSuffix(lastLine, "\n"))
		var base int64
		if err := tx.QueryRowContext(ctx, `SELECT base_seq FROM ledger_chain WHERE id = 1`).Scan(&base); err != nil {
			return 0, l.wrap("prune: read chain base", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM ledger_blocks WHERE first_seq < $1`, keepFrom); err != nil {
			return 0, l.wrap("prune: delete blocks", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ledger_chain SET base_seq = $1, base_hash = $2 WHERE id = 1`,
			lastSeq, baseHash); err != nil {
			return 0, l.wrap("prune: move chain base", err)
		}
		n = lastSeq - base
	}
	hour := GrainHour.Start(before).Add(-time.Hour).Unix()
	for _, table := range []string{"usage_subject", "usage_total"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE grain = 'hour' AND period <= $1`, hour); err != nil {
			return 0, l.wrap("prune: delete hourly "+table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, l.wrap("prune: commit", err)
	}
	return n, nil
}
