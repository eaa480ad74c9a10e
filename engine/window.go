package engine

import (
	"math"
	"math/bits"
	"time"
)

// never is a time (unix ns) that is never reached: a request that can never
// fit, such as one larger than its limit.
const never = math.MaxInt64

// windowState is one limit's counters in one subject's (or team's) state.
// Times are unix nanoseconds; start == 0 means the window was never used.
// end == 0 with start != 0 means end is not yet computed (just loaded).
type windowState struct {
	key              string
	start, end       int64
	cur, prev, next  int64
	warned, breached bool
	// probe is set (with an Authority) while the counts include requests
	// that a fail-open tier admitted during an outage: when such a window
	// refuses a request, the engine asks the Authority instead, at most
	// once per openProbeEvery, and probe is the earliest time (unix ns) of
	// the next ask. The Authority's answer replaces the counts and clears
	// it.
	probe int64
}

// windowStart returns the start (unix ns) of the window of period p that
// contains t. Calendar periods align in loc; others to the Unix epoch.
func windowStart(t int64, p Period, loc *time.Location) int64 {
	switch p.Calendar {
	case CalendarMinute:
		return alignOffset(t, int64(time.Minute), loc)
	case CalendarHour:
		return alignOffset(t, int64(time.Hour), loc)
	case CalendarDay, CalendarWeek, CalendarMonth:
		lt := time.Unix(0, t).In(loc)
		y, m, d := lt.Date()
		switch p.Calendar {
		case CalendarWeek:
			d -= (int(lt.Weekday()) + 6) % 7 // back to Monday
		case CalendarMonth:
			d = 1
		}
		return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixNano()
	}
	return t - floorMod(t, int64(p.Every))
}

// alignOffset truncates t to a multiple of step in the local time of loc,
// so that hours align to local hours in zones with half-hour offsets.
func alignOffset(t, step int64, loc *time.Location) int64 {
	var off int64
	if loc != time.UTC {
		_, o := time.Unix(0, t).In(loc).Zone()
		off = int64(o) * int64(time.Second)
	}
	lt := t + off
	return lt - floorMod(lt, step) - off
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// windowEnd returns the end (unix ns) of the window of period p that starts
// at start, which is the start of the next one.
func windowEnd(start int64, p Period, loc *time.Location) int64 {
	switch p.Calendar {
	case CalendarMinute:
		return start + int64(time.Minute)
	case CalendarHour:
		return start + int64(time.Hour)
	case CalendarDay, CalendarWeek, CalendarMonth:
		y, m, d := time.Unix(0, start).In(loc).Date()
		switch p.Calendar {
		case CalendarDay:
			d++
		case CalendarWeek:
			d += 7
		case CalendarMonth:
			m++
		}
		return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixNano()
	}
	return start + int64(p.Every)
}

// rollLocked moves ws to the window containing now: the current count
// becomes the previous one and a reservation in the next window becomes
// current. A clock that goes backwards keeps the current window. The caller
// holds the lock of the state that owns ws.
func rollLocked(ws *windowState, now int64, p Period, loc *time.Location) {
	if ws.start != 0 && ws.end == 0 {
		ws.end = windowEnd(ws.start, p, loc)
	}
	if ws.start != 0 && now < ws.end && now >= ws.start {
		return
	}
	if ws.start != 0 && now < ws.start {
		return
	}
	s := windowStart(now, p, loc)
	switch {
	case ws.start == 0:
		ws.cur, ws.prev, ws.next = 0, 0, 0
	case s == ws.end:
		ws.prev, ws.cur, ws.next = ws.cur, ws.next, 0
	case s == windowEnd(ws.end, p, loc):
		ws.prev, ws.cur, ws.next = ws.next, 0, 0
	default:
		ws.cur, ws.prev, ws.next = 0, 0, 0
	}
	ws.start, ws.end = s, windowEnd(s, p, loc)
	ws.warned, ws.breached = false, false
}

// weighted returns ceil(n × part / whole) without overflow; part <= whole.
func weighted(n, part, whole int64) int64 {
	if n <= 0 || part <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(n), uint64(part))
	q, r := bits.Div64(hi, lo, uint64(whole))
	if r != 0 {
		q++
	}
	return int64(q)
}

// usedLocked is the usage of ws at now (rolled to now): the count for a
// fixed window, the two-window estimate for a sliding one.
func usedLocked(ws *windowState, now int64, mode WindowMode) int64 {
	if mode == WindowFixed {
		return ws.cur
	}
	length := ws.end - ws.start
	return addSat(weighted(ws.prev, min(ws.end-now, length), length), ws.cur)
}

// mulDiv returns floor(a × b / c) for 0 <= a < c and b >= 0, without
// overflow.
func mulDiv(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c))
	return int64(q)
}

// span is one window as seen by the sliding estimate: prev weighs down over
// [start, end).
type span struct{ start, end, prev, cur int64 }

// spansLocked returns the current window, the next one and the one after,
// with the counts each would have (reservations included).
func spansLocked(ws *windowState, p Period, loc *time.Location) [3]span {
	e2 := windowEnd(ws.end, p, loc)
	return [3]span{
		{ws.start, ws.end, ws.prev, ws.cur},
		{ws.end, e2, ws.cur, ws.next},
		{e2, windowEnd(e2, p, loc), ws.next, 0},
	}
}

// fitTimeLocked returns the earliest time >= now (unix ns) at which usage
// plus amount fits within limit, or never. It looks at most two windows
// ahead. The caller holds the owner's lock.
func fitTimeLocked(ws *windowState, now int64, mode WindowMode, p Period, loc *time.Location, amount, limit int64) int64 {
	target := limit - amount
	if target < 0 {
		return never
	}
	sp := spansLocked(ws, p, loc)
	for _, s := range sp {
		r := target - s.cur
		if r < 0 {
			continue
		}
		if mode == WindowFixed || s.prev <= r {
			return max(now, s.start)
		}
		// ceil(prev × (end-t) / L) <= r  ⇔  end - t <= floor(r × L / prev).
		return max(now, s.start, s.end-mulDiv(r, s.end-s.start, s.prev))
	}
	return never
}

// fitsAtLocked reports whether amount fits within limit at time t, in the
// current or the next window, and which: slot 0 is the current window,
// slot 1 the next. The caller holds the owner's lock.
func fitsAtLocked(ws *windowState, t int64, mode WindowMode, p Period, loc *time.Location, amount, limit int64) (slot int, ok bool) {
	sp := spansLocked(ws, p, loc)
	for i, s := range sp[:2] {
		if t < s.start || t >= s.end {
			continue
		}
		used := s.cur
		if mode == WindowSliding {
			used = addSat(used, weighted(s.prev, s.end-t, s.end-s.start))
		}
		return i, fits(used, amount, limit)
	}
	return 0, false
}
