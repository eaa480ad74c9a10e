package ledger

import (
	"context"
	"database/sql"
	"fmt"
)

// subjectKey is one row of usage_subject.
type subjectKey struct {
	grain                       Grain
	period                      int64
	subject, team, tier, action string
}

// totalKey is one row of usage_total.
type totalKey struct {
	grain              Grain
	period             int64
	team, tier, action string
}

// rollups are the deltas of the records one fold adds, summed per row so
// that each row is written once per fold.
type rollups struct {
	subject map[subjectKey]*counts
	total   map[totalKey]*counts
}

func newRollups() rollups {
	return rollups{subject: make(map[subjectKey]*counts), total: make(map[totalKey]*counts)}
}

// addRecord adds what r adds to the rollups, at every grain.
func (ru rollups) addRecord(r *Record) {
	d, ok := r.rollupDelta()
	if !ok {
		return
	}
	t := r.rollupTime()
	for _, g := range grains {
		p := g.Start(t).Unix()
		ru.add(subjectKey{g, p, r.Subject, r.Team, r.Tier, r.Action}, d)
	}
}

func (ru rollups) add(k subjectKey, d counts) {
	c := ru.subject[k]
	if c == nil {
		c = new(counts)
		ru.subject[k] = c
	}
	c.add(d)
	tk := totalKey{k.grain, k.period, k.team, k.tier, k.action}
	t := ru.total[tk]
	if t == nil {
		t = new(counts)
		ru.total[tk] = t
	}
	t.add(d)
}

const (
	upsertSubject = `INSERT INTO usage_subject
		(grain, period, subject, team, tier, action, calls, units, tokens, rejections, refunded, extra, owed) VALUES `
	upsertSubjectSuffix = ` ON CONFLICT (grain, subject, period, team, tier, action) DO UPDATE SET
		calls = usage_subject.calls + excluded.calls,
		units = usage_subject.units + excluded.units,
		tokens = usage_subject.tokens + excluded.tokens,
		rejections = usage_subject.rejections + excluded.rejections,
		refunded = usage_subject.refunded + excluded.refunded,
		extra = usage_subject.extra + excluded.extra,
		owed = usage_subject.owed + excluded.owed`
	upsertTotal = `INSERT INTO usage_total
		(grain, period, team, tier, action, calls, units, tokens, rejections, refunded, extra, owed) VALUES `
	upsertTotalSuffix = ` ON CONFLICT (grain, period, team, tier, action) DO UPDATE SET
		calls = usage_total.calls + excluded.calls,
		units = usage_total.units + excluded.units,
		tokens = usage_total.tokens + excluded.tokens,
		rejections = usage_total.rejections + excluded.rejections,
		refunded = usage_total.refunded + excluded.refunded,
		extra = usage_total.extra + excluded.extra,
		owed = usage_total.owed + excluded.owed`
)

// upsertRollups adds ru to the rollup tables. Each key occurs once, which
// a multi-row upsert on PostgreSQL requires.
func upsertRollups(ctx context.Context, tx *sql.Tx, mark byte, ru rollups) error {
	rows := make([][]any, 0, len(ru.subject))
	for k, c := range ru.subject {
		rows = append(rows, []any{k.grain.String(), k.period, k.subject, k.team, k.tier, k.action,
			c.calls, c.units, c.tokens, c.rejections, c.refunded, c.extra, c.owed})
	}
	if err := insertRows(ctx, tx, mark, upsertSubject, rows, upsertSubjectSuffix); err != nil {
		return fmt.Errorf("usage_subject: %w", err)
	}
	rows = rows[:0]
	for k, c := range ru.total {
		rows = append(rows, []any{k.grain.String(), k.period, k.team, k.tier, k.action,
			c.calls, c.units, c.tokens, c.rejections, c.refunded, c.extra, c.owed})
	}
	if err := insertRows(ctx, tx, mark, upsertTotal, rows, upsertTotalSuffix); err != nil {
		return fmt.Errorf("usage_total: %w", err)
	}
	return nil
}
