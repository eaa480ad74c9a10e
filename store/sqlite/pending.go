package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

var _ engine.PendingStore = (*Store)(nil)

// pendingRow is one encoded pending record.
type pendingRow struct {
	id      []byte
	settled int // 1: a settled mark
	expires int64
	data    []byte // nil: delete the row
}

// pruneEvery is how often SavePending deletes the records that expired,
// at most: under sync durability it runs with every charge.
const pruneEvery = time.Second

// SavePending saves snaps and applies recs in one transaction (see
// engine.PendingStore): an open or settled record is written over the
// row of its id, a dropped one deletes it, and rows that expired by now
// are deleted; an open record never replaces a settled one. Records are
// encoded (see pendingcodec.go), and checked, before anything is written.
func (s *Store) SavePending(ctx context.Context, snaps []engine.Snapshot, recs []engine.PendingRecord, now time.Time) error {
	also, err := s.PendingTx(recs, now)
	if err != nil {
		return err
	}
	return s.SaveWith(ctx, snaps, also)
}

// PendingTx returns the work of SavePending's transaction but the
// snapshots: it writes recs, and deletes the rows that expired by now. It
// encodes and checks recs first, so that an error leaves nothing to
// write. It lets a caller commit the records with other work in one
// SaveWith (store/durable: with a decision's ledger record).
func (s *Store) PendingTx(recs []engine.PendingRecord, now time.Time) (TxFunc, error) {
	rows := make([]pendingRow, len(recs))
	ends := make([]int, len(recs))
	buf := make([]byte, 0, 112*len(recs))
	for i := range recs {
		r := &recs[i]
		if r.ID == uuid.Nil {
			return nil, fmt.Errorf("store/sqlite: save pending record %d of %d: the id is empty", i+1, len(recs))
		}
		rows[i] = pendingRow{id: r.ID[:], expires: r.Expires.UnixNano()}
		if r.State == engine.PendingSettled {
			rows[i].settled = 1
		}
		if r.State != engine.PendingDropped {
			buf = appendPending(buf, r)
		}
		ends[i] = len(buf)
	}
	start := 0
	for i := range rows {
		if recs[i].State != engine.PendingDropped {
			rows[i].data = buf[start:ends[i]:ends[i]]
		}
		start = ends[i]
	}
	nowNS := now.UnixNano()
	prune := false
	if last := s.pruned.Load(); nowNS-last >= int64(pruneEvery) && s.pruned.CompareAndSwap(last, nowNS) {
		prune = true
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		var put, del *sql.Stmt
		defer func() {
			for _, st := range []*sql.Stmt{put, del} {
				if st != nil {
					st.Close()
				}
			}
		}()
		for _, rw := range rows {
			var err error
			if rw.data == nil {
				if del == nil {
					del = tx.StmtContext(ctx, s.deletePending)
				}
				_, err = del.ExecContext(ctx, rw.id)
			} else {
				if put == nil {
					put = tx.StmtContext(ctx, s.putPending)
				}
				_, err = put.ExecContext(ctx, rw.id, rw.settled, rw.expires, rw.data)
			}
			if err != nil {
				return fmt.Errorf("pending record %x: %w", rw.id, err)
			}
		}
		if prune {
			prune := tx.StmtContext(ctx, s.prunePending)
			defer prune.Close()
			if _, err := prune.ExecContext(ctx, nowNS); err != nil {
				return fmt.Errorf("delete expired pending records: %w", err)
			}
		}
		return nil
	}, nil
}

// putPending writes a pending record over the row of its id; a settled
// mark is never undone by an older save.
const putPending = `INSERT INTO pending (id, settled, expires, data) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (id) DO UPDATE SET settled = excluded.settled, expires = excluded.expires, data = excluded.data
WHERE excluded.settled >= pending.settled`

// LoadPending returns the records that expire after now. A row that does
// not decode is an error naming it: the file was changed by something
// else than quotagate.
func (s *Store) LoadPending(ctx context.Context, now time.Time) ([]engine.PendingRecord, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	rows, err := s.file.Reader().QueryContext(ctx, `SELECT id, data FROM pending WHERE expires > ?1 ORDER BY expires`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: load pending records: %w", err)
	}
	defer rows.Close()
	var out []engine.PendingRecord
	for rows.Next() {
		var id, data []byte
		if err := rows.Scan(&id, &data); err != nil {
			return nil, fmt.Errorf("store/sqlite: load pending records: %w", err)
		}
		r, err := decodePending(id, data)
		if err != nil {
			return nil, fmt.Errorf("store/sqlite: load pending record %x: the row does not decode (%v): delete it from the pending table", id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store/sqlite: load pending records: %w", err)
	}
	return out, nil
}
