package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

var _ engine.PendingStore = (*Store)(nil)

// Pending records are a log as well. Every priced decision puts one
// record and, once the table of the engine is full or the record expires,
// drops it: as rows of a table, an insert and a delete, each with its
// index, per decision. Instead, each transaction that writes records
// appends them (a dropped one as its id alone) as one row of pending_log.
// A compaction replays the log, drops what was dropped or has expired,
// writes what is live back as a few rows and deletes the rows it read;
// it runs after the commit that takes the log past twice the bytes the
// last one wrote, plus compactMin (see compactDue). LoadPending replays
// the log the same way. The rows of the table pending, which earlier
// versions wrote, are replayed first, and deleted by the first
// compaction.
//
// Each row also holds the now of its save: a record that expires at or
// before the latest now in the log counts as deleted (PendingStore's
// contract), whether or not a compaction has removed it yet. A save
// without records writes a row for its now at most once a second.
//
// A log row's data is its format byte and the varint now (Unix
// nanoseconds), then one entry per record:
//
//	byte     state (engine.PendingState)
//	[16]byte id
//	varint   Expires, Unix nanoseconds (not for PendingDropped)
//	uvarint  length, then the record (pendingcodec.go; not for
//	         PendingDropped)
const pendingLogFormat = 0x01

// defaultCompactMin is the log's growth, in bytes, past twice what the
// last compaction wrote, that starts the next; past compactRows rows
// (small ones: under sync durability a row per decision, or a save's now
// alone) the log need only have doubled.
const (
	defaultCompactMin = 4 << 20
	compactRows       = 4096
)

// nowEvery is how often, at most, a save without records writes its now.
const nowEvery = time.Second

// compactChunk is the most bytes a compaction writes in one row.
const compactChunk = 1 << 20

// pendEntry is a record as the log keeps it; seq is the log row it came
// from (0: a row of the table pending).
type pendEntry struct {
	state   engine.PendingState
	expires int64
	data    []byte
	seq     int64
}

// SavePending saves snaps and applies recs in one transaction (see
// engine.PendingStore): an open or settled record replaces the one of its
// id, a dropped one deletes it; an open record never replaces a settled
// one. Records are encoded (see pendingcodec.go), and checked, before
// anything is written.
func (s *Store) SavePending(ctx context.Context, snaps []engine.Snapshot, recs []engine.PendingRecord, now time.Time) error {
	also, err := s.PendingTx(recs, now)
	if err != nil {
		return err
	}
	return s.SaveWith(ctx, snaps, also)
}

// PendingTx returns the work of SavePending's transaction but the
// snapshots: it appends recs to the pending log. It encodes and checks
// recs first, so that an error leaves nothing to write. now is the
// caller's clock: a compaction drops the records that expired by the
// latest now given. It lets a caller commit the records with other work
// in one SaveWith (store/durable: with a decision's ledger record).
func (s *Store) PendingTx(recs []engine.PendingRecord, now time.Time) (TxFunc, error) {
	nowNS := now.UnixNano()
	if len(recs) == 0 && nowNS-s.pendNow.Load() < int64(nowEvery) {
		return func(context.Context, *sql.Tx) error { return nil }, nil
	}
	buf, err := encodePendingLog(nowNS, recs)
	if err != nil {
		return nil, err
	}
	puts := 0
	for i := range recs {
		if recs[i].State != engine.PendingDropped {
			puts++
		}
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		put := tx.StmtContext(ctx, s.insertPendingLog)
		defer put.Close()
		res, err := put.ExecContext(ctx, buf)
		if err != nil {
			if len(recs) == 0 {
				return fmt.Errorf("pending records: %w", err)
			}
			return fmt.Errorf("pending records (%s first): %w", recs[0].ID, err)
		}
		if seq, err := res.LastInsertId(); err == nil {
			s.pend.stage(seq, buf, puts)
		} else {
			s.pend.off()
		}
		// Counted when written (tracked rows when committed): a
		// transaction rolled back only makes the next compaction a
		// little earlier, or the next row of a now a little later.
		if !s.pend.on {
			s.pendLogBytes.Add(int64(len(buf)))
		}
		s.pendLogRows.Add(1)
		for {
			last := s.pendNow.Load()
			if nowNS <= last || s.pendNow.CompareAndSwap(last, nowNS) {
				return nil
			}
		}
	}, nil
}

// encodePendingLog returns the log row of recs, saved at now (Unix
// nanoseconds), checking each record first.
func encodePendingLog(now int64, recs []engine.PendingRecord) ([]byte, error) {
	buf := make([]byte, 1, 11+112*len(recs))
	buf[0] = pendingLogFormat
	buf = binary.AppendVarint(buf, now)
	var scratch []byte
	for i := range recs {
		r := &recs[i]
		if r.ID == uuid.Nil {
			return nil, fmt.Errorf("store/sqlite: save pending record %d of %d: the id is empty", i+1, len(recs))
		}
		if r.State > engine.PendingDropped {
			return nil, fmt.Errorf("store/sqlite: save pending record %s: unknown state %d", r.ID, r.State)
		}
		e := pendEntry{state: r.State}
		if r.State != engine.PendingDropped {
			scratch = appendPending(scratch[:0], r)
			e.expires, e.data = r.Expires.UnixNano(), scratch
		}
		buf = appendEntry(buf, r.ID, e)
	}
	return buf, nil
}

// appendEntry appends the log entry of id to b.
func appendEntry(b []byte, id uuid.UUID, e pendEntry) []byte {
	b = append(b, byte(e.state))
	b = append(b, id[:]...)
	if e.state == engine.PendingDropped {
		return b
	}
	b = binary.AppendVarint(b, e.expires)
	return appendBytes(b, e.data)
}

// decodePendingLog returns the now of a log row's data and calls fn with
// it and each of its entries; an entry's data is shared with the row. A
// row that does not decode is an error.
func decodePendingLog(data []byte, fn func(now int64, id uuid.UUID, e pendEntry)) (now int64, err error) {
	if len(data) == 0 || data[0] != pendingLogFormat {
		return 0, errors.New("unknown pending log format")
	}
	d := decoder{b: data[1:]}
	now = d.varint()
	if d.err != nil {
		return 0, d.err
	}
	for len(d.b) > 0 {
		var e pendEntry
		st := d.byte()
		id := d.fixed(16)
		if d.err == nil && st > byte(engine.PendingDropped) {
			return 0, fmt.Errorf("unknown state %d", st)
		}
		e.state = engine.PendingState(st)
		if e.state != engine.PendingDropped {
			e.expires = d.varint()
			e.data = d.bytes()
		}
		if d.err != nil {
			return 0, d.err
		}
		fn(now, uuid.UUID(id), e)
	}
	return now, nil
}

// apply applies e, the next entry in the log's order, saved at now, to
// live.
func apply(live map[uuid.UUID]pendEntry, now int64, id uuid.UUID, e pendEntry) {
	switch old, ok := live[id]; {
	case e.state == engine.PendingDropped:
		delete(live, id)
	case ok && old.state == engine.PendingSettled && e.state == engine.PendingOpen && old.expires > now:
		// A settled mark is never undone by an older save, until it
		// expires: then it was deleted, at the latest by this save.
	default:
		live[id] = e
	}
}

// queryer is what replay reads through: a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// replay returns the records that the table pending and then the log, in
// order, leave live and that expire after now and after the latest now
// in the log, which it returns too (as latest), with the last log row it
// read.
func replay(ctx context.Context, q queryer, now int64) (live map[uuid.UUID]pendEntry, latest, last int64, err error) {
	if live, latest, last, err = replayAll(ctx, q); err != nil {
		return nil, 0, 0, err
	}
	now = max(now, latest)
	for id, e := range live {
		if e.expires <= now {
			delete(live, id)
		}
	}
	return live, latest, last, nil
}

// replayAll is replay keeping the records that expired.
func replayAll(ctx context.Context, q queryer) (live map[uuid.UUID]pendEntry, latest, last int64, err error) {
	live = make(map[uuid.UUID]pendEntry)
	rows, err := q.QueryContext(ctx, `SELECT id, settled, expires, data FROM pending`)
	if err != nil {
		return nil, 0, 0, err
	}
	for rows.Next() {
		var id, data []byte
		var settled, expires int64
		if err := rows.Scan(&id, &settled, &expires, &data); err != nil {
			rows.Close()
			return nil, 0, 0, err
		}
		if len(id) != 16 {
			rows.Close()
			return nil, 0, 0, fmt.Errorf("pending record %x: the id is %d bytes, want 16: delete it from the pending table", id, len(id))
		}
		e := pendEntry{expires: expires, data: data}
		if settled != 0 {
			e.state = engine.PendingSettled
		}
		apply(live, 0, uuid.UUID(id), e)
	}
	if err := rows.Close(); err != nil {
		return nil, 0, 0, err
	}
	rows, err = q.QueryContext(ctx, `SELECT seq, data FROM pending_log ORDER BY seq`)
	if err != nil {
		return nil, 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&last, &data); err != nil {
			return nil, 0, 0, err
		}
		rowNow, err := decodePendingLog(data, func(now int64, id uuid.UUID, e pendEntry) {
			e.seq = last
			apply(live, now, id, e)
		})
		latest = max(latest, rowNow)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("pending_log row %d does not decode (%v): the file was changed by something other than quotagate; restore it from a backup, or delete that row (the decisions in it can then no longer be settled)", last, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, err
	}
	return live, latest, last, nil
}

// LoadPending returns the records that expire after now, in the order
// they expire. A record that does not decode is an error naming it and
// saying what to do: the file was changed by something else than
// quotagate.
func (s *Store) LoadPending(ctx context.Context, now time.Time) ([]engine.PendingRecord, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// One read transaction: the table and the log as of one commit.
	tx, err := s.file.Reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: load pending records: %w", err)
	}
	defer tx.Rollback()
	live, _, _, err := replay(ctx, tx, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: load pending records: %w", err)
	}
	out := make([]engine.PendingRecord, 0, len(live))
	for id, e := range live {
		r, err := decodePending(id[:], e.data)
		if err != nil {
			where := "the table pending: delete it from the pending table"
			if e.seq != 0 {
				where = fmt.Sprintf("pending_log row %d: restore the file from a backup, or delete that row (the decisions in it can then no longer be settled)", e.seq)
			}
			return nil, fmt.Errorf("store/sqlite: load pending record %x: the record does not decode (%v); it is in %s", id[:], err, where)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b engine.PendingRecord) int { return a.Expires.Compare(b.Expires) })
	return out, nil
}

// compactDue reports whether the pending log has grown enough since the
// last compaction to run one.
func (s *Store) compactDue() bool {
	grown, live := s.pendLogBytes.Load(), s.pendLiveBytes.Load()
	if s.pend.on {
		// The log's bytes, against what its live records take.
		live = int64(s.pend.liveBytes)
	}
	return grown >= 2*live+s.compactMin || (s.pendLogRows.Load() >= compactRows && grown >= 2*live)
}

// compact replays the pending log and writes what is live back, in rows
// of up to compactChunk bytes in the order the records expire, deleting
// every row it read (and those of the table pending), in one transaction.
// On failure nothing changed, and the next compaction tries again. Only
// the leader calls it.
func (s *Store) compact(ctx context.Context) error {
	pace := engine.PacerFrom(ctx)
	var written int64
	var rows []trackedRow
	var live map[uuid.UUID]pendEntry
	err := s.writeTx(ctx, "compact the pending log", &s.compactErrs, func(tx *sql.Tx) error {
		var latest, last int64
		var err error
		if live, latest, last, err = replay(ctx, tx, s.pendNow.Load()); err != nil {
			return err
		}
		type kept struct {
			id uuid.UUID
			e  pendEntry
		}
		all := make([]kept, 0, len(live))
		for id, e := range live {
			all = append(all, kept{id, e})
		}
		slices.SortFunc(all, func(a, b kept) int { return cmp.Compare(a.e.expires, b.e.expires) })
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_log WHERE seq <= ?1`, last); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending`); err != nil {
			return err
		}
		put := tx.StmtContext(ctx, s.insertPendingLog)
		defer put.Close()
		latest = max(latest, s.pendNow.Load())
		head := binary.AppendVarint([]byte{pendingLogFormat}, latest)
		buf := slices.Clone(head)
		first := 0 // the first entry of the row being filled
		for i, k := range all {
			buf = appendEntry(buf, k.id, k.e)
			if len(buf) < compactChunk && i < len(all)-1 {
				continue
			}
			pace.Step()
			seq, err := insertRow(ctx, put, buf)
			if err != nil {
				return err
			}
			for j := first; j <= i; j++ {
				all[j].e.seq = seq
			}
			rows = append(rows, trackedRow{seq: seq, bytes: len(buf)})
			first = i + 1
			written += int64(len(buf))
			buf = buf[:len(head)]
		}
		if len(all) == 0 && latest != 0 {
			// Keep the latest now.
			seq, err := insertRow(ctx, put, head)
			if err != nil {
				return err
			}
			rows = append(rows, trackedRow{seq: seq, bytes: len(head)})
			written += int64(len(head))
		}
		for _, k := range all {
			live[k.id] = k.e
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.pend.reset(rows, live)
	s.compactions.Add(1)
	s.pendLiveBytes.Store(written)
	s.pendLogBytes.Store(written)
	s.pendLogRows.Store(0)
	return nil
}

// insertRow inserts data as a pending log row with put, returning its seq.
func insertRow(ctx context.Context, put *sql.Stmt, data []byte) (int64, error) {
	res, err := put.ExecContext(ctx, data)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// Compactions returns how many compactions of the pending log committed,
// and how many failed.
func (s *Store) Compactions() (committed, failed int64) {
	return s.compactions.Load(), s.compactErrs.Load()
}
