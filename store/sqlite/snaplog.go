package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// The snapshot log is how Save writes.
//
// A flush saves the snapshots of the subjects that changed since the last
// one: under load, a large share of all subjects, scattered over every
// page of the snapshots table. Upserted row by row, each flush rewrote
// nearly the whole table: every page to the WAL, and again to the file
// at the next checkpoint. Instead, each Save appends its snapshots as one
// row of snapshot_log (a few pages), and the store keeps the newest
// snapshot of each key in memory, in recent, until a fold upserts them
// into the table in key order and deletes the log rows this store wrote.
// A subject saved by many flushes between two folds is written to the
// table once.
//
// A saved snapshot is in the file from its commit on, in the table or in
// the log: Open folds the log rows that a process which stopped without
// Close (or crashed) left, before anything reads them, and Close folds
// what is recent. Load looks in recent first.

// A log row's data is its format byte, then one entry per snapshot:
//
//	uvarint key length, key
//	uvarint snapshot length, the snapshot (appendSnapshot's format)
const logFormat = 0x01

// foldLimits say when the log is folded: after the commit that takes it
// past rows rows or bytes bytes of this store's, or recent past keys
// keys. They bound the memory recent holds (its rows share the saves'
// buffers) and the work of a fold and of Open's recovery. Past max rows,
// because folds keep failing, Save refuses to write.
type foldLimits struct{ rows, bytes, keys, max int }

var defaultFoldLimits = foldLimits{rows: 256, bytes: 16 << 20, keys: 1 << 16, max: 8 * 256}

// appendLogRow appends rows to b as a log row's data.
func appendLogRow(b []byte, rows []row) []byte {
	b = append(b, logFormat)
	for i := range rows {
		b = appendString(b, rows[i].key)
		b = appendBytes(b, rows[i].data)
	}
	return b
}

// decodeLogRow decodes a log row's data into its rows, each checked to be
// a snapshot that decodes and carrying that snapshot's version.
func decodeLogRow(data []byte) ([]row, error) {
	if len(data) == 0 || data[0] != logFormat {
		return nil, errors.New("unknown snapshot log format")
	}
	d := decoder{b: data[1:]}
	var rows []row
	for len(d.b) > 0 && d.err == nil {
		key := d.string()
		snap := d.bytes()
		if d.err != nil {
			break
		}
		s, err := decodeSnapshot(snap)
		if err != nil {
			return nil, fmt.Errorf("snapshot of %q: %w", key, err)
		}
		if s.Version > 1<<63-1 {
			return nil, fmt.Errorf("snapshot of %q: version %d does not fit in a signed 64-bit column", key, s.Version)
		}
		rows = append(rows, row{key: key, version: int64(s.Version), data: snap})
	}
	if d.err != nil {
		return nil, d.err
	}
	return rows, nil
}

// appendLog writes r's snapshots as one log row in tx, keeping its seq
// in r. A call without snapshots writes nothing.
func (s *Store) appendLog(ctx context.Context, stmt *sql.Stmt, r *saveReq) error {
	r.seq = 0
	if len(r.rows) == 0 {
		return nil
	}
	res, err := stmt.ExecContext(ctx, appendLogRow(make([]byte, 0, r.size+16*len(r.rows)), r.rows))
	if err != nil {
		return fmt.Errorf("store/sqlite: save %d snapshots (%q first): %w", len(r.rows), r.rows[0].key, err)
	}
	if r.seq, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("store/sqlite: save: %w", err)
	}
	return nil
}

// logged records, after the commit, the log rows of the calls whose work
// committed, and their snapshots as recent. Only the leader calls it.
func (s *Store) logged(batch []*saveReq) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for _, r := range batch {
		if r.err != nil || r.seq == 0 {
			continue
		}
		s.logSeqs = append(s.logSeqs, r.seq)
		s.logBytes += r.size
		for _, rw := range r.rows {
			if old, ok := s.recent[rw.key]; !ok || rw.version > old.version {
				s.recent[rw.key] = rw
			}
		}
	}
}

// foldDue reports whether the log is due a fold. Only the leader (or
// Close) calls it.
func (s *Store) foldDue() bool {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	l := &s.foldAt
	return len(s.logSeqs) >= l.rows || s.logBytes >= l.bytes || len(s.recent) >= l.keys
}

// foldIfFull folds the log when it holds foldAt.max rows, because folds
// after commits failed, before anything more is written to it. Its error
// fails the batch, which writes nothing.
func (s *Store) foldIfFull(ctx context.Context) error {
	s.rmu.Lock()
	n := len(s.logSeqs)
	s.rmu.Unlock()
	if n < s.foldAt.max {
		return nil
	}
	if err := s.fold(ctx); err != nil {
		return fmt.Errorf("%w; the snapshot log holds %d saves waiting for it, so nothing more is saved until it succeeds", err, n)
	}
	return nil
}

// fold upserts recent into the snapshots table, in key order, and deletes
// this store's log rows, in one transaction. On failure nothing changed,
// and the next fold tries again. Only the leader (or Close) calls it.
func (s *Store) fold(ctx context.Context) error {
	s.rmu.Lock()
	rows := make([]row, 0, len(s.recent))
	for _, rw := range s.recent {
		rows = append(rows, rw)
	}
	seqs := slices.Clone(s.logSeqs)
	s.rmu.Unlock()
	if len(rows) == 0 && len(seqs) == 0 {
		return nil
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.key, b.key) })

	err := s.writeTx(ctx, "fold the snapshot log", &s.foldErrs, func(tx *sql.Tx) error {
		upsert := tx.StmtContext(ctx, s.upsert)
		defer upsert.Close()
		if err := execRows(ctx, upsert, rows); err != nil {
			return err
		}
		del := tx.StmtContext(ctx, s.deleteLog)
		defer del.Close()
		for _, seq := range seqs {
			if _, err := del.ExecContext(ctx, seq); err != nil {
				return fmt.Errorf("delete row %d: %w", seq, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.folds.Add(1)

	s.rmu.Lock()
	defer s.rmu.Unlock()
	for _, rw := range rows {
		if cur, ok := s.recent[rw.key]; ok && cur.version <= rw.version {
			delete(s.recent, rw.key)
		}
	}
	s.logSeqs, s.logBytes = s.logSeqs[:0], 0
	return nil
}

// writeTx runs fn in a transaction on the writer and commits it. On
// failure it rolls back, counts the failure in failed and returns the
// error, saying it could not do what.
func (s *Store) writeTx(ctx context.Context, what string, failed *atomic.Int64, fn func(*sql.Tx) error) error {
	tx, err := s.file.Writer().BeginTx(ctx, nil)
	if err == nil {
		if err = fn(tx); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
	}
	if err != nil {
		failed.Add(1)
		return fmt.Errorf("store/sqlite: %s: %w", what, err)
	}
	return nil
}

// recoverLog folds every row of the snapshot log into the table, in one
// transaction: the rows a process that stopped without Close left. A row
// that does not decode is an error naming it, and nothing is changed.
func recoverLog(ctx context.Context, db *sql.DB, upsert string) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	defer tx.Rollback()
	q, err := tx.QueryContext(ctx, `SELECT seq, data FROM snapshot_log ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	newest := map[string]row{}
	n := 0
	for q.Next() {
		var seq int64
		var data []byte
		if err := q.Scan(&seq, &data); err != nil {
			q.Close()
			return fmt.Errorf("recover the snapshot log: %w", err)
		}
		rows, err := decodeLogRow(data)
		if err != nil {
			q.Close()
			return fmt.Errorf("snapshot_log row %d does not decode (%v): the file was changed by something other than quotagate; restore it from a backup, or delete that row (losing the snapshots in it)", seq, err)
		}
		for _, rw := range rows {
			if old, ok := newest[rw.key]; !ok || rw.version > old.version {
				newest[rw.key] = rw
			}
		}
		n++
	}
	if err := q.Err(); err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	q.Close()
	if n == 0 {
		return nil
	}
	rows := make([]row, 0, len(newest))
	for _, rw := range newest {
		rows = append(rows, rw)
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.key, b.key) })
	stmt, err := tx.PrepareContext(ctx, upsert)
	if err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	defer stmt.Close()
	if err := execRows(ctx, stmt, rows); err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM snapshot_log`); err != nil {
		return fmt.Errorf("recover the snapshot log: %w", err)
	}
	return tx.Commit()
}

// Folds returns how many folds of the snapshot log committed, and how
// many failed.
func (s *Store) Folds() (committed, failed int64) { return s.folds.Load(), s.foldErrs.Load() }
