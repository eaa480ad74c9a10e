package engine

import (
	"fmt"
	"strings"
	"time"
)

// Priority orders tiers and workflows for load shedding: under load, lower
// priorities are shed first. The zero value is PriorityLow.
type Priority int

const (
	PriorityLow Priority = iota
	PriorityMedium
	PriorityHigh
	PriorityCritical
)

var priorityNames = [...]string{"low", "medium", "high", "critical"}

func (p Priority) String() string {
	if p < 0 || int(p) >= len(priorityNames) {
		return fmt.Sprintf("Priority(%d)", int(p))
	}
	return priorityNames[p]
}

// ParsePriority parses "low", "medium", "high" or "critical".
func ParsePriority(s string) (Priority, error) {
	for i, n := range priorityNames {
		if strings.EqualFold(s, n) {
			return Priority(i), nil
		}
	}
	return 0, fmt.Errorf("unknown priority %q: want one of low, medium, high, critical", s)
}

// Reason says why a Decision came out as it did.
type Reason int

const (
	ReasonOK Reason = iota
	ReasonWindowExceeded
	ReasonInsufficientBalance
	ReasonFeatureNotInPlan
	ReasonShed
	ReasonNoIdentity
	ReasonUnknownSubject
	// ReasonRequestTooLarge refuses a request that can never be admitted
	// as it is: it counts more against a limit than the limit's maximum, or
	// its units or cost exceed MaxQuantity. Waiting does not help.
	ReasonRequestTooLarge
	// ReasonUnknownAction refuses a request whose action the Rules do
	// not know (no price, no features list names it), under
	// UnknownActionDeny.
	ReasonUnknownAction
	// ReasonNoRoute refuses a request that named no action or workflow and
	// matched no route, when the front end is set to refuse those.
	ReasonNoRoute
	// ReasonLengthRequired refuses a request whose body the proxy cut short
	// without a content-length, so that its cost has no upper bound. The
	// front end decides it; the engine records it.
	ReasonLengthRequired
)

var reasonNames = [...]string{"ok", "window_exceeded", "insufficient_balance", "feature_not_in_plan", "shed", "no_identity", "unknown_subject",
	"request_too_large", "unknown_action", "no_route", "length_required"}

// String returns the reason's stable snake_case name, used in metrics,
// spans, the ledger and dynamic metadata.
func (r Reason) String() string {
	if r < 0 || int(r) >= len(reasonNames) {
		return fmt.Sprintf("Reason(%d)", int(r))
	}
	return reasonNames[r]
}

// FailureMode says what happens when no decision can be made (the store
// is unreachable): FailClosed refuses, FailOpen allows. The zero value is
// FailClosed.
type FailureMode int

const (
	FailClosed FailureMode = iota
	FailOpen
)

func (m FailureMode) String() string {
	switch m {
	case FailClosed:
		return "closed"
	case FailOpen:
		return "open"
	}
	return fmt.Sprintf("FailureMode(%d)", int(m))
}

// ParseFailureMode parses "open" or "closed".
func ParseFailureMode(s string) (FailureMode, error) {
	switch strings.ToLower(s) {
	case "closed":
		return FailClosed, nil
	case "open":
		return FailOpen, nil
	}
	return 0, fmt.Errorf("unknown failure mode %q: want open or closed", s)
}

// WindowMode selects how a window counts. The zero value is WindowFixed.
type WindowMode int

const (
	// WindowFixed counts per calendar-aligned window, so a refusal has a
	// real reset time.
	WindowFixed WindowMode = iota
	// WindowSliding weights the previous window's count by how much of it
	// still overlaps the last Period (the two-window estimate).
	WindowSliding
)

func (m WindowMode) String() string {
	switch m {
	case WindowFixed:
		return "fixed"
	case WindowSliding:
		return "sliding"
	}
	return fmt.Sprintf("WindowMode(%d)", int(m))
}

// ParseWindowMode parses "fixed" or "sliding".
func ParseWindowMode(s string) (WindowMode, error) {
	switch strings.ToLower(s) {
	case "fixed":
		return WindowFixed, nil
	case "sliding":
		return WindowSliding, nil
	}
	return 0, fmt.Errorf("unknown window mode %q: want fixed or sliding", s)
}

// Unit is what a limit counts. The zero value is UnitCalls.
type Unit int

const (
	UnitCalls  Unit = iota // one per request
	UnitUnits              // the request's Units (words)
	UnitTokens             // the request's token cost
)

func (u Unit) String() string {
	switch u {
	case UnitCalls:
		return "calls"
	case UnitUnits:
		return "units"
	case UnitTokens:
		return "tokens"
	}
	return fmt.Sprintf("Unit(%d)", int(u))
}

// ParseUnit parses "calls", "units" or "tokens".
func ParseUnit(s string) (Unit, error) {
	switch strings.ToLower(s) {
	case "calls", "":
		return UnitCalls, nil
	case "units":
		return UnitUnits, nil
	case "tokens":
		return UnitTokens, nil
	}
	return 0, fmt.Errorf("unknown unit %q: want calls, units or tokens", s)
}

// Calendar names a period that aligns to the calendar in the engine's
// time zone. Its text form is its name, so a Period reads and writes as
// before in JSON. The zero value, CalendarNone, means a plain duration.
type Calendar string

const (
	CalendarNone   Calendar = ""
	CalendarMinute Calendar = "minute"
	CalendarHour   Calendar = "hour"
	CalendarDay    Calendar = "day"
	CalendarWeek   Calendar = "week"
	CalendarMonth  Calendar = "month"
)

// String returns the calendar period's name, empty for CalendarNone.
func (c Calendar) String() string { return string(c) }

// ParseCalendar parses "minute", "hour", "day", "week" or "month", in any
// case.
func ParseCalendar(s string) (Calendar, error) {
	switch c := Calendar(strings.ToLower(s)); c {
	case CalendarMinute, CalendarHour, CalendarDay, CalendarWeek, CalendarMonth:
		return c, nil
	}
	return CalendarNone, fmt.Errorf("unknown calendar period %q: want minute, hour, day, week or month", s)
}

// nominal returns the nominal length of c: a month is 30 days. It is 0 for
// CalendarNone and unknown values.
func (c Calendar) nominal() time.Duration {
	switch c {
	case CalendarMinute:
		return time.Minute
	case CalendarHour:
		return time.Hour
	case CalendarDay:
		return 24 * time.Hour
	case CalendarWeek:
		return 7 * 24 * time.Hour
	case CalendarMonth:
		return 30 * 24 * time.Hour
	}
	return 0
}

// Period is a window length. Calendar periods (minute, hour, day, week,
// month) align to the calendar in the engine's time zone; a Period with
// only Every set is a plain duration aligned to the Unix epoch.
type Period struct {
	// Calendar is the calendar period, or CalendarNone.
	Calendar Calendar
	// Every is the duration of non-calendar periods; for calendar periods
	// it is the nominal length (a month is 30 days) used only for display
	// and the sliding estimate.
	Every time.Duration
}

// ParsePeriod parses "minute", "hour", "day", "week", "month" (also
// "second") or a Go duration such as "15m".
func ParsePeriod(s string) (Period, error) {
	if strings.ToLower(s) == "second" {
		return Period{Every: time.Second}, nil
	}
	if c, err := ParseCalendar(s); err == nil {
		return Period{Calendar: c, Every: c.nominal()}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return Period{}, fmt.Errorf("unknown period %q: want minute, hour, day, week, month or a duration such as 15m", s)
	}
	if d <= 0 {
		return Period{}, fmt.Errorf("period %q must be positive", s)
	}
	if d > MaxPeriod {
		return Period{}, fmt.Errorf("period %q is longer than %s (10 years), the longest window quotagate keeps", s, MaxPeriod)
	}
	return Period{Every: d}, nil
}

// MaxPeriod is the longest period a limit or grant may have: 10 years of
// 366 days. Window arithmetic adds up to three periods to a time in unix
// nanoseconds, which stays far from overflow within it.
const MaxPeriod = 10 * 366 * 24 * time.Hour

// String returns the period as ParsePeriod accepts it.
func (p Period) String() string {
	if p.Calendar != CalendarNone {
		return p.Calendar.String()
	}
	if p.Every == time.Second {
		return "second"
	}
	return p.Every.String()
}

// Adjective returns the word used in warnings: "daily", "hourly", "per-minute",
// "weekly", "monthly", or "15m" for a plain duration.
func (p Period) Adjective() string {
	switch p.Calendar {
	case CalendarMinute:
		return "per-minute"
	case CalendarHour:
		return "hourly"
	case CalendarDay:
		return "daily"
	case CalendarWeek:
		return "weekly"
	case CalendarMonth:
		return "monthly"
	}
	return p.String()
}
