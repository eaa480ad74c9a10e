package ledger

import (
	"fmt"
	"strings"
	"time"
)

// Grain is the length of a report period. Periods align to UTC. The zero
// value is GrainHour.
type Grain int

const (
	GrainHour Grain = iota
	GrainDay
	GrainMonth
)

var grains = [...]Grain{GrainHour, GrainDay, GrainMonth}

// String returns "hour", "day" or "month", the name stored in the rollups.
func (g Grain) String() string {
	switch g {
	case GrainHour:
		return "hour"
	case GrainDay:
		return "day"
	case GrainMonth:
		return "month"
	}
	return fmt.Sprintf("Grain(%d)", int(g))
}

// ParseGrain parses "hour", "day" or "month".
func ParseGrain(s string) (Grain, error) {
	for _, g := range grains {
		if strings.EqualFold(s, g.String()) {
			return g, nil
		}
	}
	return 0, fmt.Errorf("ledger: unknown period %q: want hour, day or month", s)
}

// Start returns the start of the period of g that contains t, in UTC.
func (g Grain) Start(t time.Time) time.Time {
	t = t.UTC()
	switch g {
	case GrainDay:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case GrainMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

// ceil returns the start of the first period of g that begins at or after t.
func (g Grain) ceil(t time.Time) time.Time {
	s := g.Start(t)
	if s.Equal(t) {
		return s
	}
	switch g {
	case GrainDay:
		return s.AddDate(0, 0, 1)
	case GrainMonth:
		return s.AddDate(0, 1, 0)
	}
	return s.Add(time.Hour)
}
