package ledger

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Query selects usage for a report. Empty Subject, Team and Tier mean
// "all"; they combine with AND. From is rounded down and To up to whole
// periods of By; the zero To means now. Periods are UTC.
type Query struct {
	Subject string
	Team    string
	Tier    string
	From    time.Time
	To      time.Time
	By      Grain
}

// Row is the usage of one period.
type Row struct {
	// Period is the start of the period (UTC).
	Period time.Time `json:"period"`
	// Calls counts allowed (charged) requests; Rejections denied ones.
	// Units and Tokens are settled: a refund takes its tokens back and an
	// adjustment replaces the estimate with the actual usage, in the
	// period the request was decided in.
	Calls      int64 `json:"calls"`
	Units      int64 `json:"units"`
	Tokens     int64 `json:"tokens"`
	Rejections int64 `json:"rejections"`
	// Refunded and Extra are the tokens settlements gave back and charged
	// on top; Owed is what an adjustment could not charge (the balance
	// was short): owed by the customer, not in Tokens.
	Refunded int64 `json:"refunded"`
	Extra    int64 `json:"extra"`
	Owed     int64 `json:"owed"`
}

// BillingRow is the tokens one subject was charged in one period on one
// tier, priced.
type BillingRow struct {
	Period  time.Time `json:"period"`
	Subject string    `json:"subject"`
	Tier    string    `json:"tier"`
	// Tokens are those charged, settled; Refunded and Extra how
	// settlements moved them, and Owed what could not be charged.
	Tokens   int64   `json:"tokens"`
	Refunded int64   `json:"refunded"`
	Extra    int64   `json:"extra"`
	Owed     int64   `json:"owed"`
	Price    float64 `json:"price"`
	Amount   float64 `json:"amount"`
	// OwedAmount is Owed × Price: what the customer owes on top of Amount.
	OwedAmount float64 `json:"owed_amount"`
}

// Usage returns the usage per period of q.By between q.From and q.To, for
// the periods that had any, oldest first. It reads the rollups: a subject
// query reads that subject's rows, any other query reads the totals, so
// the cost does not grow with the number of subjects. It folds the
// pending rollups first (FoldRollups), so it counts every record appended.
func (l *Ledger) Usage(ctx context.Context, q Query) ([]Row, error) {
	if err := l.FoldRollups(ctx); err != nil {
		return nil, err
	}
	table := "usage_total"
	if q.Subject != "" {
		table = "usage_subject"
	}
	where, args := q.where()
	rows, err := l.db.QueryContext(ctx, `SELECT period, CAST(SUM(calls) AS BIGINT), CAST(SUM(units) AS BIGINT),
		CAST(SUM(tokens) AS BIGINT), CAST(SUM(rejections) AS BIGINT),
		CAST(SUM(refunded) AS BIGINT), CAST(SUM(extra) AS BIGINT), CAST(SUM(owed) AS BIGINT)
		FROM `+table+` WHERE `+where+` GROUP BY period ORDER BY period`, args...)
	if err != nil {
		return nil, l.wrap("usage", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		var period int64
		if err := rows.Scan(&period, &r.Calls, &r.Units, &r.Tokens, &r.Rejections, &r.Refunded, &r.Extra, &r.Owed); err != nil {
			return nil, l.wrap("usage", err)
		}
		r.Period = time.Unix(period, 0).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap("usage", err)
	}
	return out, nil
}

// Billing returns, per period of q.By, subject and tier, the tokens
// charged and their price: Amount = Tokens × prices[tier]. Every tier
// that was charged tokens must have a price (0 is a price); otherwise
// Billing names the missing tiers. Like Usage, it folds the pending
// rollups first.
func (l *Ledger) Billing(ctx context.Context, q Query, prices map[string]float64) ([]BillingRow, error) {
	if err := l.FoldRollups(ctx); err != nil {
		return nil, err
	}
	where, args := q.where()
	rows, err := l.db.QueryContext(ctx, `SELECT period, subject, tier, CAST(SUM(tokens) AS BIGINT),
		CAST(SUM(refunded) AS BIGINT), CAST(SUM(extra) AS BIGINT), CAST(SUM(owed) AS BIGINT)
		FROM usage_subject WHERE `+where+` GROUP BY period, subject, tier
		HAVING SUM(tokens) <> 0 OR SUM(refunded) <> 0 OR SUM(owed) <> 0 ORDER BY period, subject, tier`, args...)
	if err != nil {
		return nil, l.wrap("billing", err)
	}
	defer rows.Close()
	var out []BillingRow
	missing := map[string]bool{}
	for rows.Next() {
		var r BillingRow
		var period int64
		if err := rows.Scan(&period, &r.Subject, &r.Tier, &r.Tokens, &r.Refunded, &r.Extra, &r.Owed); err != nil {
			return nil, l.wrap("billing", err)
		}
		r.Period = time.Unix(period, 0).UTC()
		price, ok := prices[r.Tier]
		if !ok {
			missing[r.Tier] = true
		}
		r.Price, r.Amount, r.OwedAmount = price, float64(r.Tokens)*price, float64(r.Owed)*price
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap("billing", err)
	}
	if len(missing) > 0 {
		tiers := slices.Sorted(maps.Keys(missing))
		return nil, fmt.Errorf("ledger: billing: no price for tier %s: give every tier a price (tier=price, 0 for free)",
			strings.Join(quoteAll(tiers), ", "))
	}
	return out, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// where builds the WHERE clause of q with $n placeholders.
func (q Query) where() (string, []any) {
	to := q.To
	if to.IsZero() {
		to = time.Now()
	}
	conds := []string{"grain = $1", "period >= $2", "period < $3"}
	args := []any{q.By.String(), q.By.Start(q.From).Unix(), q.By.ceil(to).Unix()}
	add := func(col, val string) {
		if val != "" {
			args = append(args, val)
			conds = append(conds, col+" = $"+strconv.Itoa(len(args)))
		}
	}
	add("subject", q.Subject)
	add("team", q.Team)
	add("tier", q.Tier)
	return strings.Join(conds, " AND "), args
}
