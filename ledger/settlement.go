package ledger

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// KindSettlement settles an earlier charge from the upstream's response:
// a refund, or an adjustment to the actual usage. It references the
// charge's decision id (Settlement.Settles) and has an id of its own.
const KindSettlement Kind = "settlement"

// Settlement is what a KindSettlement record changed. Amounts are tokens.
type Settlement struct {
	// Settles is the id of the decision (and charge record) settled.
	Settles uuid.UUID `json:"settles"`
	// DecidedAt is when that decision was made: the settlement counts in
	// the usage of the decision's periods, so that a period's tokens are
	// what it was finally charged.
	DecidedAt time.Time `json:"decided_at"`
	// Outcome is "refund" or "adjust".
	Outcome string `json:"outcome"`
	// Status is the response code; 0 means there was no response.
	Status int `json:"status"`
	// Charged is what the decision charged; Units its estimated units and
	// ActualUnits those the upstream reported (0 when none).
	Charged     int64 `json:"charged"`
	ActualUnits int64 `json:"actual_units,omitempty"`
	// Refunded was given back, Extra charged on top, Owed the part of
	// Extra the balance could not cover (recorded, not charged).
	Refunded        int64 `json:"refunded,omitempty"`
	Extra           int64 `json:"extra,omitempty"`
	Owed            int64 `json:"owed,omitempty"`
	WindowsRefunded bool  `json:"windows_refunded,omitempty"`
}

// FromSettled returns the KindSettlement record of s, whose response had
// the given status, made at now. ok is false for an outcome that changed
// nothing (kept, duplicate, unmatched, aged out, invalid): only changes
// are recorded.
func FromSettled(s *engine.Settled, status int, traceID string, now time.Time) (r Record, ok bool, err error) {
	if s.Outcome != engine.SettleRefund && s.Outcome != engine.SettleAdjust {
		return Record{}, false, nil
	}
	id, err := newIDAt(now)
	if err != nil {
		return Record{}, false, fmt.Errorf("ledger: settlement record id: %w", err)
	}
	return Record{
		ID:           id,
		Time:         now,
		Kind:         KindSettlement,
		Subject:      s.Subject,
		Team:         s.Team,
		Tier:         string(s.Tier),
		Action:       s.Action,
		Workflow:     s.Workflow,
		Units:        max(s.Units, 0),
		Charged:      max(s.Extra-s.Owed, 0),
		Balance:      s.Balance,
		HasBalance:   s.HasBalance,
		BalanceOwner: s.Owner,
		Allowed:      true,
		Reason:       s.Outcome.String(),
		TraceID:      traceID,
		Settlement: &Settlement{
			Settles: s.DecisionID, DecidedAt: s.DecidedAt, Outcome: s.Outcome.String(), Status: status,
			Charged: s.Charged, ActualUnits: s.ActualUnits,
			Refunded: s.Refunded, Extra: s.Extra, Owed: s.Owed, WindowsRefunded: s.WindowsRefunded,
		},
	}, true, nil
}

// newIDAt returns a fresh UUIDv7 that carries the time now (as decision ids
// carry theirs), so that Find locates the record by its id.
func newIDAt(now time.Time) (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return id, err
	}
	ms := uint64(now.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id, nil
}

// delta is what a settlement record adds to the usage of its
// decision's periods: the tokens it moved (extra paid less refunded), the
// units corrected to the actual ones, and the refunded, extra and owed
// tokens themselves.
func (s *Settlement) delta(units int64) counts {
	d := counts{tokens: s.Extra - s.Owed - s.Refunded, refunded: s.Refunded, extra: s.Extra, owed: s.Owed}
	if s.Outcome == engine.SettleAdjust.String() {
		d.units = s.ActualUnits - units
	}
	return d
}
