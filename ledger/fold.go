package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// RollupInterval is how often a running Writer folds the records appended
// since the last fold into the rollup tables. Reports fold first, so they
// are always exact; the interval bounds the records a fold after a crash
// re-reads from the chain. A fold writes one row per subject, team, tier,
// action and period touched, so its cost grows with the interval far more
// slowly than the records do: 10 000 active subjects cost about as much
// to fold every 30 s as every 5 s, six times less often.
const RollupInterval = 30 * time.Second

// maxPendingKeys bounds the rollup rows held in memory between folds:
// Append folds at once when a batch takes the pending rollups past it.
const maxPendingKeys = 1 << 17

// foldPage is how many blocks a fold reads from the chain per query.
const foldPage = 512

// pendingRollups are the rollup deltas of the records this Ledger
// appended and committed since its last fold, kept in memory so that a
// fold need not read them back. They cover the records from..to (from is
// 0 when empty) unless broken: another appender's records (another
// process, or AppendTx) lie in between, or a fold failed. A fold uses them
// only when they cover exactly the records after the stored watermark
// (ledger_chain.rollup_seq) up to the head; otherwise it folds from the
// chain itself. Either way the watermark moves in the same transaction as
// the rollups, so a record is folded once, crash or not.
type pendingRollups struct {
	mu       sync.Mutex
	ru       rollups
	from, to int64
	broken   bool
	// folded is the watermark of this Ledger's last fold: a block at or
	// below it (an Append that committed before that fold but recorded
	// its deltas after it) is already in the rollups.
	folded int64
}

// add records the deltas of the block recs (seq first..last), just
// committed, and returns how many rollup rows are pending.
func (p *pendingRollups) add(first, last int64, recs []Record) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last <= p.folded {
		return len(p.ru.subject)
	}
	switch {
	case p.from == 0:
		p.from = first
	case first != p.to+1:
		p.broken = true
	}
	p.to = max(p.to, last)
	if p.broken {
		return 0
	}
	if p.ru.subject == nil {
		p.ru = newRollups()
	}
	for i := range recs {
		p.ru.addRecord(&recs[i])
	}
	return len(p.ru.subject)
}

// take empties p and returns its deltas when they are exactly those of
// the records after..head, or ok == false.
func (p *pendingRollups) take(after, head int64) (ru rollups, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ru, ok = p.ru, !p.broken && p.from == after+1 && p.to == head
	p.ru, p.from, p.to, p.broken = rollups{}, 0, 0, false
	return ru, ok
}

// done records a fold's outcome: on success the new watermark, on
// failure that the pending deltas (taken and lost) no longer add up.
func (p *pendingRollups) done(watermark int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.broken = true
		return
	}
	p.folded = max(p.folded, watermark)
}

// FoldRollups brings the rollup tables up to date with the chain: it adds
// the usage of every record after the stored watermark and moves the
// watermark to the chain's head, in one transaction. Usage, Billing,
// Prune and Close call it; a Writer calls it every RollupInterval. Safe
// for concurrent use, also by several processes on one database.
func (l *Ledger) FoldRollups(ctx context.Context) (err error) {
	l.foldMu.Lock()
	defer l.foldMu.Unlock()
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return l.wrap("fold rollups: begin", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	head, mark, err := l.lockWatermark(ctx, tx)
	if err != nil {
		return l.wrap("fold rollups: read watermark", err)
	}
	if mark >= head {
		return tx.Rollback()
	}
	ru, ok := l.pending.take(mark, head)
	defer func() { l.pending.done(head, err) }()
	if !ok {
		if ru, err = l.rollupsFromChain(ctx, tx, mark, head); err != nil {
			return err
		}
	}
	if err := upsertRollups(ctx, tx, l.dialect.mark, ru); err != nil {
		return l.wrap("fold rollups", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ledger_chain SET rollup_seq = $1 WHERE id = 1`, head); err != nil {
		return l.wrap("fold rollups: move watermark", err)
	}
	if err := tx.Commit(); err != nil {
		return l.wrap("fold rollups: commit", err)
	}
	return nil
}

// rollupFields are the fields of a stored record that the rollups need,
// decoded without the rest.
type rollupFields struct {
	Time    time.Time `json:"time"`
	Kind    Kind      `json:"kind"`
	Subject string    `json:"subject"`
	Team    string    `json:"team"`
	Tier    string    `json:"tier"`
	Action  string    `json:"action"`
	Units   int64     `json:"units"`
	Charged int64     `json:"charged"`
	Spill   *Spill    `json:"spill"`
	// Settlement is set on settlement records.
	Settlement *Settlement `json:"settlement"`
}

// rollupsFromChain reads the records after..head from the chain and sums
// their rollup deltas. A line that does not decode is skipped: Verify
// names it, and it must not stop the rollups of every later record.
func (l *Ledger) rollupsFromChain(ctx context.Context, tx *sql.Tx, after, head int64) (rollups, error) {
	ru := newRollups()
	for after < head {
		blocks, err := l.readBlocks(ctx, tx, after, foldPage)
		if err != nil {
			return ru, err
		}
		for _, b := range blocks {
			if b.firstSeq > head {
				return ru, nil
			}
			foldLines(&ru, b.lines)
			after = b.lastSeq
		}
		if len(blocks) < foldPage {
			break
		}
	}
	return ru, nil
}

// foldLines adds the records of one block's lines to ru.
func foldLines(ru *rollups, lines string) {
	for lines != "" {
		line, rest, _ := strings.Cut(lines, "\n")
		lines = rest
		_, _, body, ok := parseLine(line)
		var f rollupFields
		if !ok || json.Unmarshal([]byte(body), &f) != nil {
			continue
		}
		r := Record{Time: f.Time, Kind: f.Kind, Subject: f.Subject, Team: f.Team, Tier: f.Tier,
			Action: f.Action, Units: f.Units, Charged: f.Charged, Spill: f.Spill, Settlement: f.Settlement}
		ru.addRecord(&r)
	}
}

// foldIfLarge folds when a batch has taken the pending rollups past
// maxPendingKeys, so that memory stays bounded without a Writer. A
// failure is not the append's: its records are committed, and the next
// fold reads them from the chain.
func (l *Ledger) foldIfLarge(ctx context.Context, pending int) {
	if pending >= maxPendingKeys {
		_ = l.FoldRollups(ctx)
	}
}

// lockWatermark reads the chain's head and the rollup watermark in tx,
// locking the chain's row (PostgreSQL) until tx ends, so that no append,
// fold or prune moves either meanwhile.
func (l *Ledger) lockWatermark(ctx context.Context, tx *sql.Tx) (head, rollup int64, err error) {
	q := `SELECT head_seq, rollup_seq FROM ledger_chain WHERE id = 1` + l.dialect.lockHead
	err = tx.QueryRowContext(ctx, q).Scan(&head, &rollup)
	return head, rollup, err
}
