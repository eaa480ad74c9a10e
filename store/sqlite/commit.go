package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/quotagate/quotagate/engine"
)

// saveReq is one Save call waiting for a commit. done receives exactly one
// result: the commit's error, or lead == true when the caller is to commit
// the queue itself.
type saveReq struct {
	rows []row
	size int    // the bytes of rows' data
	also TxFunc // run in the same transaction; nil for none
	err  error  // the failure of this request alone (its also)
	seq  int64  // its snapshot log row, once written; 0 for none
	done chan saveResult
}

// TxFunc is work that SaveWith commits atomically with the snapshots, in
// the same transaction (for example ledger records, when the ledger is in
// the same database file). It may run twice, the first time in a
// transaction that is rolled back (see SaveWith), so it must change
// nothing outside tx.
type TxFunc func(ctx context.Context, tx *sql.Tx) error

// row is one encoded snapshot.
type row struct {
	key     string
	version int64
	data    []byte
}

type saveResult struct {
	err  error
	lead bool
}

// upsert keeps, per key, the row with the highest version; a stale
// snapshot (a lower or equal version) leaves the row as it is.
const upsert = `INSERT INTO snapshots (key, version, data) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET version = excluded.version, data = excluded.data
WHERE excluded.version > snapshots.version`

// Save persists snaps, keeping per key the highest Version. Concurrent
// calls are group-committed: each call's snapshots are in exactly one
// transaction, shared with whichever calls queued while the previous
// transaction was being written. Save returns when that transaction has
// committed (under DurabilitySync, when it is on disk). Once queued, a
// call waits for its commit even if ctx is cancelled, so that the
// snapshots' fate is known.
func (s *Store) Save(ctx context.Context, snaps []engine.Snapshot) error {
	return s.SaveWith(ctx, snaps, nil)
}

// SaveWith is Save that also runs also in the transaction that commits
// snaps: both are committed or neither is. Group commit still applies;
// when one call's also (or its snapshots) fails, the transaction is
// written again with each call's work within a savepoint, so that the
// failure rolls back only that call's snapshots and work, and is returned
// to it alone. also may therefore run twice; only its last run commits.
func (s *Store) SaveWith(ctx context.Context, snaps []engine.Snapshot, also TxFunc) error {
	if len(snaps) == 0 && also == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/sqlite: save: %w", err)
	}
	rows, size, err := encode(snaps)
	if err != nil {
		return err
	}
	req := &saveReq{rows: rows, size: size, also: also, done: make(chan saveResult, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	s.pending = append(s.pending, req)
	if s.leading {
		s.mu.Unlock()
		res := <-req.done
		if !res.lead {
			return res.err
		}
	} else {
		s.leading = true
		s.mu.Unlock()
	}
	return s.lead(ctx, req)
}

// lead commits everything queued, in one transaction, then hands the lead
// to the oldest call that queued meanwhile (if any), so no caller commits
// for others more than once. It returns own's result.
func (s *Store) lead(ctx context.Context, own *saveReq) error {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()

	ctx = context.WithoutCancel(ctx)
	pace := engine.PacerFrom(ctx)
	if len(batch) > 1 {
		// Others wait on this commit (a Check in durability sync among
		// them, maybe): no pauses for them.
		pace = nil
		ctx = engine.WithPacer(ctx, nil)
	}
	err := s.foldIfFull(ctx)
	if err == nil {
		pace.Step()
		err = s.commit(ctx, batch)
	}
	if err == nil {
		pace.Step()
		s.logged(batch)
		if s.pend.on {
			pace.Step()
			s.pendLogBytes.Add(int64(s.pend.committed(pace)))
		}
	} else {
		s.pend.aborted()
	}
	var ownErr error
	for _, r := range batch {
		rerr := err
		if rerr == nil {
			rerr = r.err
		}
		if r == own {
			ownErr = rerr
			continue
		}
		r.done <- saveResult{err: rerr}
	}
	// The batch is saved whether or not these succeed: a failed fold or
	// compaction leaves the logs as they are, for the next one.
	if err == nil && s.foldDue() {
		pace.Step()
		s.fold(ctx)
	}
	if err == nil && s.compactDue() {
		s.compact(ctx)
	}

	s.mu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].done <- saveResult{lead: true}
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	return ownErr
}

// commit writes every snapshot of batch in one transaction. It first
// tries without savepoints, which cost two statements and a journal of
// the pages changed for every call with work of its own; only when a
// call's work fails does it roll back and write the batch again with a
// savepoint per such call, so that the failure is that call's alone.
func (s *Store) commit(ctx context.Context, batch []*saveReq) error {
	err := s.commitOnce(ctx, batch, false)
	if errors.Is(err, errAlsoFailed) {
		err = s.commitOnce(ctx, batch, true)
	}
	return err
}

// errAlsoFailed reports that a call's TxFunc failed in a transaction
// without savepoints, which is then rolled back and written again.
var errAlsoFailed = errors.New("store/sqlite: save: work failed without a savepoint")

// commitOnce writes batch in one transaction, with a savepoint around each
// call that has work of its own when isolate is set. Without, the first
// failing work rolls everything back with errAlsoFailed.
func (s *Store) commitOnce(ctx context.Context, batch []*saveReq, isolate bool) (err error) {
	s.pend.aborted() // what an earlier attempt staged
	tx, err := s.file.Writer().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store/sqlite: save: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// Each statement is a step that pace may pause after (a background
	// flush: lead passes no Pacer when a caller waits on the commit).
	pace := engine.PacerFrom(ctx)
	if err := s.pend.deleteDead(ctx, tx); err != nil {
		return fmt.Errorf("store/sqlite: save: delete dead pending log rows: %w", err)
	}
	pace.Step()
	stmt := tx.StmtContext(ctx, s.insertLog)
	defer stmt.Close()
	for i, r := range batch {
		r.err = nil
		switch {
		case r.also != nil && isolate:
			r.err = s.saveWithin(ctx, tx, stmt, i, r)
			continue
		case r.also != nil:
			if s.appendLog(ctx, stmt, r) != nil {
				return errAlsoFailed
			}
			pace.Step()
			if r.also(ctx, tx) != nil {
				return errAlsoFailed
			}
			pace.Step()
			continue
		}
		if err := s.appendLog(ctx, stmt, r); err != nil {
			return err
		}
		pace.Step()
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store/sqlite: save: commit: %w", err)
	}
	s.commits.Add(1)
	return nil
}

// saveWithin writes r's rows and runs r.also inside savepoint i, rolling
// both back if either fails. The error is r's alone.
func (s *Store) saveWithin(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, i int, r *saveReq) error {
	sp := fmt.Sprintf("save_%d", i)
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
		return fmt.Errorf("store/sqlite: save: savepoint: %w", err)
	}
	staged := len(s.pend.staged)
	err := s.appendLog(ctx, stmt, r)
	if err == nil {
		if err = r.also(ctx, tx); err != nil {
			err = fmt.Errorf("store/sqlite: save: %w", err)
		}
	}
	if err != nil {
		r.seq = 0 // rolled back
		s.pend.staged = s.pend.staged[:staged]
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO "+sp); rerr != nil {
			return fmt.Errorf("store/sqlite: save: roll back to savepoint: %w (after %w)", rerr, err)
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE "+sp); rerr != nil && err == nil {
		err = fmt.Errorf("store/sqlite: save: release savepoint: %w", rerr)
	}
	return err
}

// execRows upserts rows with stmt, the prepared upsert, stepping the
// Pacer ctx carries after each.
func execRows(ctx context.Context, stmt *sql.Stmt, rows []row) error {
	pace := engine.PacerFrom(ctx)
	for _, rw := range rows {
		pace.Step()
		if _, err := stmt.ExecContext(ctx, rw.key, rw.version, rw.data); err != nil {
			return fmt.Errorf("save %q: %w", rw.key, err)
		}
	}
	return nil
}

// encode validates and encodes snaps in the caller's goroutine, so that
// one caller's bad snapshot never fails a transaction shared with others.
// The rows share one buffer, of size bytes.
func encode(snaps []engine.Snapshot) (rows []row, size int, err error) {
	rows = make([]row, len(snaps))
	ends := make([]int, len(snaps))
	buf := make([]byte, 0, 96*len(snaps))
	for i := range snaps {
		snap := &snaps[i]
		if snap.Version > math.MaxInt64 {
			return nil, 0, fmt.Errorf("store/sqlite: save %q: version %d does not fit in a signed 64-bit column", snap.Key, snap.Version)
		}
		if buf, err = appendSnapshot(buf, snap); err != nil {
			return nil, 0, fmt.Errorf("store/sqlite: save %q: encode: %w", snap.Key, err)
		}
		ends[i] = len(buf)
	}
	start := 0
	for i := range snaps {
		rows[i] = row{key: snaps[i].Key, version: int64(snaps[i].Version), data: buf[start:ends[i]:ends[i]]}
		start = ends[i]
	}
	return rows, len(buf), nil
}
