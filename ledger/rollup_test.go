package ledger

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestRollupsMatchNaive adds random records (few subjects, times that
// go back and forth across hours, days, months and time zones) and
// compares every row with the sums worked out one record at a time,
// without the shortcuts addRecord takes (the last rows per subject, the
// periods of the last hour).
func TestRollupsMatchNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	base := time.Date(2026, 1, 31, 22, 0, 0, 0, time.UTC)
	zones := []*time.Location{time.UTC, time.FixedZone("east", 5*3600+1800), time.FixedZone("west", -8*3600)}
	for round := range 20 {
		ru := newRollups()
		wantSubject := map[subjectKey]counts{}
		wantTotal := map[totalKey]counts{}
		for range 500 {
			r := Record{Kind: KindCharge, Subject: []string{"a", "b", "c"}[rng.IntN(3)], Team: []string{"", "ops"}[rng.IntN(2)],
				Tier: "standard", Action: []string{"translate", "get"}[rng.IntN(2)], Units: rng.Int64N(1000), Charged: rng.Int64N(10)}
			if rng.IntN(5) == 0 {
				r = Record{Kind: KindRejection, Subject: r.Subject, Team: r.Team, Tier: r.Tier, Action: r.Action}
			}
			r.Time = base.Add(time.Duration(rng.Int64N(int64(72*time.Hour))) - 24*time.Hour).In(zones[rng.IntN(len(zones))])
			ru.addRecord(&r)
			d, _ := r.rollupDelta()
			for _, g := range grains {
				p := g.Start(r.Time).Unix()
				k := subjectKey{g, p, r.Subject, r.Team, r.Tier, r.Action}
				c := wantSubject[k]
				c.add(d)
				wantSubject[k] = c
				tk := totalKey{g, p, r.Team, r.Tier, r.Action}
				tc := wantTotal[tk]
				tc.add(d)
				wantTotal[tk] = tc
			}
		}
		gotSubject := map[subjectKey]counts{}
		for k, c := range ru.subject {
			gotSubject[k] = *c
		}
		gotTotal := map[totalKey]counts{}
		for k, c := range ru.total {
			gotTotal[k] = *c
		}
		if !reflect.DeepEqual(gotSubject, wantSubject) || !reflect.DeepEqual(gotTotal, wantTotal) {
			t.Fatalf("round %d: rollups differ from the naive sums:\n got %v\n%v\nwant %v\n%v", round, gotSubject, gotTotal, wantSubject, wantTotal)
		}
	}
}
