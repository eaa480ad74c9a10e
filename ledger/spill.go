package ledger

import (
	"sort"
	"sync"

	"github.com/google/uuid"
)

// spillKey groups overflowed decisions: one spill record per subject,
// team, tier, action and balance owner, per hour (so that each lands in
// the right hourly rollup).
type spillKey struct {
	subject, team, tier, action, owner string
	hour                               int64
}

// spill holds what overflowed until the next write. Admin records are
// never summarised: they are kept whole (they are rare).
type spill struct {
	mu    sync.Mutex
	m     map[spillKey]*Spill
	admin []Record
}

// add summarises r. It holds the lock only for a map update.
func (s *spill) add(r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Kind == KindAdmin {
		s.admin = append(s.admin, r)
		return
	}
	// A settlement counts in its decision's hour, as it would unspilled.
	r.Time = r.rollupTime()
	k := spillKey{r.Subject, r.Team, r.Tier, r.Action, r.BalanceOwner, GrainHour.Start(r.Time).Unix()}
	sp := s.m[k]
	if sp == nil {
		sp = &Spill{First: r.Time, Last: r.Time}
		s.m[k] = sp
	}
	switch r.Kind {
	case KindCharge:
		sp.Records++
		sp.Calls++
		sp.Units = addCount(sp.Units, r.Units)
		sp.Tokens = addCount(sp.Tokens, r.Charged)
	case KindRejection:
		sp.Records++
		sp.Rejections++
	case KindSettlement:
		if st := r.Settlement; st != nil {
			d := st.delta(r.Units)
			sp.Records++
			sp.Units = addCount(sp.Units, d.units)
			sp.Tokens = addCount(sp.Tokens, d.tokens)
			sp.Refunded = addCount(sp.Refunded, d.refunded)
			sp.Extra = addCount(sp.Extra, d.extra)
			sp.Owed = addCount(sp.Owed, d.owed)
		}
	case KindSpill:
		if o := r.Spill; o != nil {
			sp.Records = addCount(sp.Records, o.Records)
			sp.Calls = addCount(sp.Calls, o.Calls)
			sp.Units = addCount(sp.Units, o.Units)
			sp.Tokens = addCount(sp.Tokens, o.Tokens)
			sp.Rejections = addCount(sp.Rejections, o.Rejections)
			sp.Refunded = addCount(sp.Refunded, o.Refunded)
			sp.Extra = addCount(sp.Extra, o.Extra)
			sp.Owed = addCount(sp.Owed, o.Owed)
			r.Time = o.First
			if o.Last.After(sp.Last) {
				sp.Last = o.Last
			}
		}
	}
	if r.Time.Before(sp.First) {
		sp.First = r.Time
	}
	if r.Time.After(sp.Last) {
		sp.Last = r.Time
	}
}

// take returns the summaries as spill records (and the kept admin
// records), and empties s.
func (s *spill) take() []Record {
	s.mu.Lock()
	m, admin := s.m, s.admin
	if len(m) == 0 && len(admin) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.m, s.admin = make(map[spillKey]*Spill), nil
	s.mu.Unlock()

	out := admin
	for k, sp := range m {
		id, err := uuid.NewV7()
		if err != nil {
			id = uuid.New()
		}
		out = append(out, Record{
			ID:           id,
			Time:         sp.First,
			Kind:         KindSpill,
			Subject:      k.subject,
			Team:         k.team,
			Tier:         k.tier,
			Action:       k.action,
			BalanceOwner: k.owner,
			Charged:      sp.Tokens,
			Allowed:      sp.Calls > 0,
			Reason:       "queue_full",
			Spill:        sp,
		})
	}
	// Deterministic order keeps the chain readable: by time, then subject.
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Subject < out[j].Subject
	})
	return out
}
