package sqlite

import (
	"context"
	"database/sql"
	"slices"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// pendTrack follows, in memory, which row of the pending log holds each
// live record, so that rows whose records were all dropped or replaced
// are deleted as they die instead of rewritten by a compaction. Records
// are dropped in about the order they were put (the engine's table is a
// queue, bounded and aged), so the log's oldest rows die first: they are
// deleted from the head of the log, oldest first, in the next save's
// transaction. Only a prefix is ever deleted, so a dropped record's
// tombstone never outlives an older row that still holds the record; the
// newest row is never deleted, so the log keeps the latest now. Records
// that stay live long hold the head, and the log grows until a
// compaction rewrites them (compactDue).
//
// It is the leader's alone: the work of a transaction stages the rows it
// wrote, and only a commit applies them. A row another process wrote
// (another store on the file) is not tracked, and a tombstone in a row
// this store tracks could kill a record in it: on the first such row,
// tracking stops, and compactions alone keep the log.
type pendTrack struct {
	on     bool // off until Open found no rows of the table pending
	where  map[uuid.UUID]pendLoc
	rows   []trackedRow // the log's rows, in seq order
	staged []stagedRow  // written by the transaction being committed
	dead   []trackedRow // deleted from the head, by the next commit
	// liveBytes estimates the bytes of the live records: each counts
	// its row's bytes over the records put in it.
	liveBytes int
}

// pendLoc is where a live record is, and what keeps it there.
type pendLoc struct {
	seq     int64
	settled bool
	expires int64
}

// trackedRow is a log row: how many live records it holds, its size,
// and what each record put in it counts in liveBytes.
type trackedRow struct {
	seq   int64
	live  int
	bytes int
	per   int
}

// stagedRow is a row a transaction wrote, with puts records put in it.
type stagedRow struct {
	seq  int64
	data []byte
	puts int
}

// stage records that the transaction being committed wrote data, with
// puts records put (not dropped) in it, as row seq. The caller is the
// leader.
func (t *pendTrack) stage(seq int64, data []byte, puts int) {
	if t.on {
		t.staged = append(t.staged, stagedRow{seq, data, puts})
	}
}

// committed applies the staged rows (and the deletion of the dead ones)
// once their transaction committed, and finds the rows that died, stepping
// pace every 64 records. It returns the bytes the log grew by.
func (t *pendTrack) committed(pace *engine.Pacer) (grown int) {
	for _, d := range t.dead {
		grown -= d.bytes
	}
	t.dead = t.dead[:0]
	for i, st := range t.staged {
		if n := len(t.rows); n > 0 && st.seq != t.rows[n-1].seq+1 {
			// Not right after the last row (a row's seq is the
			// largest plus one, and the newest row stays): another
			// process wrote to the log. Its rows are not tracked, so
			// leave the log to compactions, counting every row
			// written.
			for _, rest := range t.staged[i:] {
				grown += len(rest.data)
			}
			t.off()
			return grown
		}
		t.rows = append(t.rows, trackedRow{seq: st.seq, bytes: len(st.data), per: len(st.data) / max(1, st.puts)})
		grown += len(st.data)
		n := 0
		decodePendingLog(st.data, func(now int64, id uuid.UUID, e pendEntry) {
			if n++; n%64 == 0 {
				pace.Step()
			}
			t.apply(st.seq, now, id, e)
		})
	}
	t.staged = t.staged[:0]
	// The dead head, but the newest row.
	for len(t.rows) > 1 && t.rows[0].live == 0 {
		t.dead = append(t.dead, t.rows[0])
		t.rows = t.rows[1:]
	}
	return grown
}

// apply moves the record id to row seq, as replay's apply does.
func (t *pendTrack) apply(seq, now int64, id uuid.UUID, e pendEntry) {
	old, ok := t.where[id]
	if ok && old.settled && e.state == engine.PendingOpen && old.expires > now {
		return
	}
	if ok {
		t.count(old.seq, -1)
		delete(t.where, id)
	}
	if e.state == engine.PendingDropped {
		return
	}
	t.where[id] = pendLoc{seq: seq, settled: e.state == engine.PendingSettled, expires: e.expires}
	t.count(seq, 1)
}

// count adds n live records to row seq, if tracked.
func (t *pendTrack) count(seq int64, n int) {
	if i, found := t.row(seq); found {
		t.rows[i].live += n
		t.liveBytes += n * t.rows[i].per
	}
}

// row returns the index in rows of row seq.
func (t *pendTrack) row(seq int64) (int, bool) {
	return slices.BinarySearchFunc(t.rows, seq, func(r trackedRow, seq int64) int {
		switch {
		case r.seq < seq:
			return -1
		case r.seq > seq:
			return 1
		}
		return 0
	})
}

// aborted drops what the transaction that failed staged; the dead rows
// wait for the next.
func (t *pendTrack) aborted() { t.staged = t.staged[:0] }

// off stops tracking: compactions do all the work.
func (t *pendTrack) off() { *t = pendTrack{} }

// reset tracks the rows of the log and the live records in them (as
// replay found them), from scratch.
func (t *pendTrack) reset(rows []trackedRow, live map[uuid.UUID]pendEntry) {
	*t = pendTrack{on: true, where: make(map[uuid.UUID]pendLoc, len(live)), rows: rows}
	puts := make(map[int64]int, len(rows))
	for _, e := range live {
		puts[e.seq]++
	}
	for i := range t.rows {
		t.rows[i].per = t.rows[i].bytes / max(1, puts[t.rows[i].seq])
	}
	for id, e := range live {
		t.where[id] = pendLoc{seq: e.seq, settled: e.state == engine.PendingSettled, expires: e.expires}
		t.count(e.seq, 1)
	}
}

// deleteDead deletes, in tx, the rows that died at the head of the log.
func (t *pendTrack) deleteDead(ctx context.Context, tx *sql.Tx) error {
	for _, d := range t.dead {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_log WHERE seq = ?1`, d.seq); err != nil {
			return err
		}
	}
	return nil
}

// trackLog starts tracking the log at Open: from a replay when the table
// pending of earlier versions is empty (else the first compaction moves
// it, and starts tracking). A log that does not replay is left to
// LoadPending to report.
func (s *Store) trackLog(ctx context.Context) error {
	tx, err := s.file.Reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var legacy bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pending)`).Scan(&legacy); err != nil {
		return err
	}
	if legacy {
		return nil
	}
	// Expired records count as live: a row holding a settled mark that
	// kept a later open record out must outlive that record's row, which
	// a compaction, not the death of the mark's row, removes.
	live, _, _, err := replayAll(ctx, tx)
	if err != nil {
		return nil
	}
	q, err := tx.QueryContext(ctx, `SELECT seq, length(data) FROM pending_log ORDER BY seq`)
	if err != nil {
		return err
	}
	defer q.Close()
	var rows []trackedRow
	total := 0
	for q.Next() {
		var r trackedRow
		if err := q.Scan(&r.seq, &r.bytes); err != nil {
			return err
		}
		rows = append(rows, r)
		total += r.bytes
	}
	if err := q.Err(); err != nil {
		return err
	}
	s.pend.reset(rows, live)
	s.pendLogBytes.Store(int64(total))
	return nil
}
