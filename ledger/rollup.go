package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
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
	// recent finds, in one lookup per record, the rows a subject's last
	// record added to at every grain: a record is added to six rows
	// (three grains, subject and total), and most records fall in the
	// periods of the subject's previous one.
	recent map[identKey]*recentRows
	// hour is the start (Unix seconds) of the hour the last record fell
	// in, and periods that hour's period at every grain: working out a
	// day's or month's start takes a calendar computation.
	hour    int64
	periods [len(grains)]int64
}

// identKey is what a subject's rows have in common but the period.
type identKey struct{ subject, team, tier, action string }

// recentRows are the rows of one identKey for one period at every grain.
type recentRows struct {
	period         [len(grains)]int64
	subject, total [len(grains)]*counts
}

func newRollups() rollups {
	return rollups{subject: make(map[subjectKey]*counts), total: make(map[totalKey]*counts),
		recent: make(map[identKey]*recentRows), hour: math.MinInt64}
}

// addRecord adds what r adds to the rollups, at every grain.
func (ru *rollups) addRecord(r *Record) {
	d, ok := r.rollupDelta()
	if !ok {
		return
	}
	t := r.rollupTime().UTC()
	if h := t.Truncate(time.Hour).Unix(); h != ru.hour {
		for i, g := range grains {
			ru.periods[i] = g.Start(t).Unix()
		}
		ru.hour = h
	}
	id := identKey{r.Subject, r.Team, r.Tier, r.Action}
	rr := ru.recent[id]
	if rr == nil {
		rr = new(recentRows)
		ru.recent[id] = rr
	}
	for i, g := range grains {
		p := ru.periods[i]
		if rr.subject[i] == nil || rr.period[i] != p {
			rr.period[i] = p
			rr.subject[i], rr.total[i] = ru.rows(subjectKey{g, p, r.Subject, r.Team, r.Tier, r.Action})
		}
		rr.subject[i].add(d)
		rr.total[i].add(d)
	}
}

// rows returns the subject row of k and its total row, adding them if
// missing.
func (ru *rollups) rows(k subjectKey) (subject, total *counts) {
	c := ru.subject[k]
	if c == nil {
		c = new(counts)
		ru.subject[k] = c
	}
	tk := totalKey{k.grain, k.period, k.team, k.tier, k.action}
	t := ru.total[tk]
	if t == nil {
		t = new(counts)
		ru.total[tk] = t
	}
	return c, t
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
