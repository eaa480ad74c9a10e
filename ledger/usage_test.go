package ledger

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// usageRecords spread over an hour, day and month boundary (t0 is
// 2026-01-31 22:00 UTC), with three subjects on two teams and three tiers.
func usageRecords() []Record {
	type who struct{ subject, team, tier string }
	people := []who{{"alice", "ops", "standard"}, {"bob", "ops", "enterprise"}, {"carol", "", "freemium"}}
	offsets := []time.Duration{0, 30 * time.Minute, 90 * time.Minute, 150 * time.Minute, 26 * time.Hour, 30 * 24 * time.Hour}
	var recs []Record
	for i, off := range offsets {
		for j, p := range people {
			allowed := (i+j)%3 != 0
			recs = append(recs, charge(p.subject, p.team, p.tier, "translate", t0.Add(off), allowed, int64(100*i+j), int64(10*i+j+1)))
		}
	}
	return recs
}

// expectedUsage computes Usage's answer the slow way, from the records.
func expectedUsage(recs []Record, q Query) []Row {
	byPeriod := map[time.Time]*Row{}
	for _, r := range recs {
		if r.Kind != KindCharge && r.Kind != KindRejection {
			continue
		}
		if (q.Subject != "" && r.Subject != q.Subject) || (q.Team != "" && r.Team != q.Team) || (q.Tier != "" && r.Tier != q.Tier) {
			continue
		}
		p := q.By.Start(r.Time)
		if p.Before(q.By.Start(q.From)) || !p.Before(q.By.ceil(q.To)) {
			continue
		}
		row := byPeriod[p]
		if row == nil {
			row = &Row{Period: p}
			byPeriod[p] = row
		}
		if r.Allowed {
			row.Calls++
			row.Units += r.Units
			row.Tokens += r.Charged
		} else {
			row.Rejections++
		}
	}
	var out []Row
	for _, r := range byPeriod {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Period.Before(out[j].Period) })
	return out
}

func TestUsage(t *testing.T) {
	recs := usageRecords()
	month := Query{From: t0.AddDate(0, -1, 0), To: t0.AddDate(0, 2, 0)}
	with := func(q Query, by Grain) Query { q.By = by; return q }
	tests := []struct {
		name string
		q    Query
	}{
		{name: "all by hour", q: with(month, GrainHour)},
		{name: "all by day", q: with(month, GrainDay)},
		{name: "all by month", q: with(month, GrainMonth)},
		{name: "subject by hour", q: with(Query{Subject: "alice", From: month.From, To: month.To}, GrainHour)},
		{name: "subject by month", q: with(Query{Subject: "bob", From: month.From, To: month.To}, GrainMonth)},
		{name: "team by day", q: with(Query{Team: "ops", From: month.From, To: month.To}, GrainDay)},
		{name: "tier by hour", q: with(Query{Tier: "freemium", From: month.From, To: month.To}, GrainHour)},
		{name: "team and tier", q: with(Query{Team: "ops", Tier: "enterprise", From: month.From, To: month.To}, GrainDay)},
		{name: "subject and wrong tier", q: with(Query{Subject: "alice", Tier: "freemium", From: month.From, To: month.To}, GrainDay)},
		{name: "narrow range", q: Query{From: t0.Add(20 * time.Minute), To: t0.Add(2 * time.Hour), By: GrainHour}},
		{name: "unknown subject", q: with(Query{Subject: "nobody", From: month.From, To: month.To}, GrainDay)},
	}
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		// Two batches, so rollup rows are both inserted and updated.
		if err := l.Append(ctx, append([]Record(nil), recs[:7]...)); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := l.Append(ctx, append([]Record(nil), recs[7:]...)); err != nil {
			t.Fatalf("Append: %v", err)
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				got, err := l.Usage(ctx, tc.q)
				if err != nil {
					t.Fatalf("Usage: %v", err)
				}
				if want := expectedUsage(recs, tc.q); !reflect.DeepEqual(got, want) {
					t.Fatalf("Usage(%+v) =\n%+v\nwant\n%+v", tc.q, got, want)
				}
			})
		}
	})
}

func TestBilling(t *testing.T) {
	recs := usageRecords()
	prices := map[string]float64{"standard": 0.002, "enterprise": 0.001, "freemium": 0}
	backends(t, func(t *testing.T, dsn func() string) {
		ctx := context.Background()
		l := openLedger(t, dsn())
		if err := l.Append(ctx, append([]Record(nil), recs...)); err != nil {
			t.Fatalf("Append: %v", err)
		}
		q := Query{From: t0.AddDate(0, -1, 0), To: t0.AddDate(0, 2, 0), By: GrainMonth}
		got, err := l.Billing(ctx, q, prices)
		if err != nil {
			t.Fatalf("Billing: %v", err)
		}
		want := map[string]int64{} // "period subject tier" -> tokens
		for _, r := range recs {
			if r.Charged != 0 {
				want[fmt.Sprintf("%s %s %s", GrainMonth.Start(r.Time).Format("2006-01"), r.Subject, r.Tier)] += r.Charged
			}
		}
		if len(got) != len(want) {
			t.Fatalf("Billing returned %d rows, want %d: %+v", len(got), len(want), got)
		}
		for _, b := range got {
			key := fmt.Sprintf("%s %s %s", b.Period.Format("2006-01"), b.Subject, b.Tier)
			if b.Tokens != want[key] || b.Price != prices[b.Tier] || math.Abs(b.Amount-float64(b.Tokens)*prices[b.Tier]) > 1e-9 {
				t.Errorf("row %s = %+v, want %d tokens at %g", key, b, want[key], prices[b.Tier])
			}
		}
		_, err = l.Billing(ctx, q, map[string]float64{"standard": 1})
		if err == nil || !strings.Contains(err.Error(), `"enterprise", "freemium"`) {
			t.Fatalf("Billing without prices = %v, want an error naming enterprise and freemium", err)
		}
	})
}

func TestParseGrain(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Grain
		wantErr bool
	}{
		{name: "hour", in: "hour", want: GrainHour},
		{name: "day", in: "Day", want: GrainDay},
		{name: "month", in: "month", want: GrainMonth},
		{name: "week", in: "week", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseGrain(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseGrain(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
