package notify

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// Alert is one notification, as the webhook receives it in JSON, the
// dashboard feed lists it and the email templates render it. Zero-valued
// optional fields are left out of the JSON.
type Alert struct {
	// ID is a UUIDv7 assigned when the alert is dispatched; receivers use it
	// to make deliveries idempotent.
	ID   uuid.UUID `json:"id"`
	Kind Kind      `json:"kind"`
	// Time is when the event happened.
	Time    time.Time   `json:"time"`
	Subject string      `json:"subject"`
	Team    string      `json:"team,omitempty"`
	Tier    engine.Tier `json:"tier,omitempty"`
	// Limit names the limit ("hour", "action:translate:day"); Period is its
	// window ("day", "15m"). Max, Used and Remaining are its state after
	// the event, and Reset is when its window ends.
	Limit     string    `json:"limit,omitempty"`
	Period    string    `json:"period,omitempty"`
	Max       int64     `json:"max,omitzero"`
	Used      int64     `json:"used,omitzero"`
	Remaining int64     `json:"remaining,omitzero"`
	Reset     time.Time `json:"reset,omitzero"`
	// Window is the start of the window (or balance period) the alert
	// belongs to; it is part of the deduplication key.
	Window time.Time `json:"window,omitzero"`
	// DecisionID ties the alert to the decision that triggered it.
	DecisionID uuid.UUID `json:"decision_id,omitzero"`
	// Balance is the token balance, for balance alerts.
	Balance int64 `json:"balance,omitzero"`
	// Count is the subject's request count in the anomalous window so far
	// and Baseline its moving average count per window, for anomaly alerts.
	Count    float64 `json:"count,omitzero"`
	Baseline float64 `json:"baseline,omitzero"`
	// Message is the human text: by default "Approaching daily limit." or
	// "Quota exceeded. Upgrade your plan or wait for the reset.", and so on.
	Message string `json:"message"`
	// Acked and AckedAt record an acknowledgement on the dashboard.
	Acked   bool      `json:"acked,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`
}

// Percent returns Used as a whole percentage of Max, or 0 when Max is 0.
func (a Alert) Percent() int64 {
	if a.Max <= 0 {
		return 0
	}
	return a.Used * 100 / a.Max
}

// dedupKey identifies the alert for deduplication: its kind, subject,
// limit and window. Lengths prefix the strings, so that no two different
// (subject, limit) pairs share a key. An alert with no window (a balance
// event from an engine that does not say which grant period it belongs
// to) is keyed by its UTC day, so that it repeats at most daily.
func (a *Alert) dedupKey() string {
	var buf [128]byte // enough for most keys, and it stays on the stack
	b := buf[:0]
	b = strconv.AppendInt(b, int64(a.Kind), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(len(a.Subject)), 10)
	b = append(b, ':')
	b = append(b, a.Subject...)
	b = strconv.AppendInt(b, int64(len(a.Limit)), 10)
	b = append(b, ':')
	b = append(b, a.Limit...)
	w := a.Window
	if w.IsZero() {
		w = a.Time.UTC().Truncate(24 * time.Hour)
	}
	b = strconv.AppendInt(b, w.UnixNano(), 10)
	return string(b)
}

// alertFromEvent converts an engine event; ok is false for an event kind
// this package does not know. The Message is left for dispatch to fill in,
// off the caller's path.
func alertFromEvent(ev engine.Event) (a Alert, ok bool) {
	k := kindOf(ev.Kind)
	if k == 0 {
		return Alert{}, false
	}
	a = Alert{
		Kind:       k,
		Time:       ev.Time,
		Subject:    ev.Subject,
		Team:       ev.Team,
		Tier:       ev.Tier,
		Limit:      ev.Limit.Name,
		Max:        ev.Limit.Limit,
		Used:       ev.Limit.Used,
		Remaining:  ev.Limit.Remaining,
		Reset:      ev.Limit.Reset,
		Window:     ev.Window,
		DecisionID: ev.DecisionID,
		Balance:    ev.Balance,
	}
	if ev.Limit.Period != (engine.Period{}) {
		a.Period = ev.Limit.Period.String()
	}
	return a, true
}

// periodAdjective returns "daily", "hourly"... for the alert's period, or
// "" when it has none.
func (a *Alert) periodAdjective() string {
	if a.Period == "" {
		return ""
	}
	p, err := engine.ParsePeriod(a.Period)
	if err != nil {
		return a.Period
	}
	return p.Adjective()
}

// message returns the text for a from msgs.
func (a *Alert) message(msgs Messages) string {
	switch a.Kind {
	case KindThreshold:
		adj := a.periodAdjective()
		if adj == "" {
			adj = "usage"
		}
		return fmt.Sprintf(msgs.Warning, adj)
	case KindBreach:
		return msgs.Exceeded
	case KindBalanceLow:
		return msgs.BalanceLow
	case KindInsufficientBalance:
		return msgs.InsufficientBalance
	case KindAnomaly:
		return msgs.Anomaly
	}
	return ""
}
