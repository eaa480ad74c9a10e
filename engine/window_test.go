package engine

import (
	"encoding/json"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// TestWindowBoundaries checks, for every period in fixed and sliding mode,
// that call N of N succeeds and N+1 fails, that the refusal's RetryAfter
// is exact (one nanosecond earlier still fails, then it succeeds), and
// that fixed windows reset on the calendar boundary in the zone.
func TestWindowBoundaries(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	kolkata := mustLoad(t, "Asia/Kolkata")
	tests := []struct {
		name      string
		period    Period
		mode      WindowMode
		loc       *time.Location
		start     time.Time // first call; calls step by one second
		max       int64
		wantReset time.Time // fixed only: the window's end
	}{
		{"minute fixed", minute, WindowFixed, nil, t0.Add(10 * time.Second), 5, t0.Add(time.Minute)},
		{"hour fixed", hour, WindowFixed, nil, t0.Add(59*time.Minute + 50*time.Second), 5, t0.Add(time.Hour)},
		{"day fixed", day, WindowFixed, nil, t0.Add(13*time.Hour + 59*time.Minute), 5,
			time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)},
		{"month fixed Jan 31", month, WindowFixed, nil, time.Date(2025, 1, 31, 23, 59, 0, 0, time.UTC), 5,
			time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"month fixed leap February", month, WindowFixed, nil, time.Date(2024, 2, 29, 23, 0, 0, 0, time.UTC), 5,
			time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"month fixed plain February", month, WindowFixed, nil, time.Date(2025, 2, 28, 23, 0, 0, 0, time.UTC), 5,
			time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"day fixed New York", day, WindowFixed, ny, time.Date(2026, 3, 10, 23, 30, 0, 0, ny), 5,
			time.Date(2026, 3, 11, 4, 0, 0, 0, time.UTC)},
		{"day fixed New York DST start", day, WindowFixed, ny, time.Date(2026, 3, 8, 12, 0, 0, 0, ny), 5,
			time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC)},
		{"hour fixed Kolkata", hour, WindowFixed, kolkata, time.Date(2026, 3, 2, 10, 45, 0, 0, kolkata), 5,
			time.Date(2026, 3, 2, 5, 30, 0, 0, time.UTC)},
		{"month fixed New York", month, WindowFixed, ny, time.Date(2026, 1, 31, 22, 0, 0, 0, ny), 5,
			time.Date(2026, 2, 1, 5, 0, 0, 0, time.UTC)},
		{"15m fixed", Period{Every: 15 * time.Minute}, WindowFixed, nil, t0.Add(14 * time.Minute), 5, t0.Add(15 * time.Minute)},
		{"minute sliding", minute, WindowSliding, nil, t0.Add(10 * time.Second), 5, time.Time{}},
		{"hour sliding", hour, WindowSliding, nil, t0.Add(20 * time.Minute), 5, time.Time{}},
		{"day sliding", day, WindowSliding, nil, t0.Add(3 * time.Hour), 5, time.Time{}},
		{"month sliding", month, WindowSliding, nil, time.Date(2025, 1, 31, 23, 0, 0, 0, time.UTC), 5, time.Time{}},
		{"month sliding leap February", month, WindowSliding, ny, time.Date(2024, 2, 10, 0, 0, 0, 0, ny), 5, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			cfg := oneTier(LimitConfig{Period: tt.period, Max: tt.max, Mode: &mode})
			cfg.Location = tt.loc
			e := newEngine(t, cfg)
			req := Request{Subject: "alice"}
			var now time.Time
			for n := range tt.max {
				now = tt.start.Add(time.Duration(n) * time.Second)
				d := chargeAt(t, e, now, req)
				if !d.Allowed {
					t.Fatalf("call %d of %d at %s refused: %v", n+1, tt.max, now, d.Reason)
				}
				if d.Binding.Used != n+1 || d.Binding.Remaining != tt.max-n-1 {
					t.Fatalf("call %d: used %d remaining %d, want %d and %d", n+1, d.Binding.Used, d.Binding.Remaining, n+1, tt.max-n-1)
				}
			}
			now = now.Add(time.Second)
			d := chargeAt(t, e, now, req)
			if d.Allowed || d.Reason != ReasonWindowExceeded {
				t.Fatalf("call %d: got allowed=%v reason %v, want window_exceeded", tt.max+1, d.Allowed, d.Reason)
			}
			if d.Message != defaultExceeded {
				t.Errorf("message %q, want %q", d.Message, defaultExceeded)
			}
			if !tt.wantReset.IsZero() {
				if !d.Binding.Reset.Equal(tt.wantReset) {
					t.Errorf("reset %s, want %s", d.Binding.Reset, tt.wantReset)
				}
				if got := now.Add(d.RetryAfter); !got.Equal(tt.wantReset) {
					t.Errorf("now+RetryAfter = %s, want the reset %s", got, tt.wantReset)
				}
			}
			if d.RetryAfter <= 0 {
				t.Fatalf("RetryAfter %s, want > 0", d.RetryAfter)
			}
			retry := now.Add(d.RetryAfter)
			if d := chargeAt(t, e, retry.Add(-time.Nanosecond), req); d.Allowed {
				t.Fatalf("charge 1ns before RetryAfter (%s) allowed", retry)
			}
			if d := chargeAt(t, e, retry, req); !d.Allowed {
				t.Fatalf("charge at RetryAfter (%s) refused: %v", retry, d.Reason)
			}
		})
	}
}

// TestSlidingCarriesPreviousWindow checks the two-window estimate: right
// after a full window the previous count still weighs nearly fully, and
// half-way through it weighs half.
func TestSlidingCarriesPreviousWindow(t *testing.T) {
	e := newEngine(t, oneTier(LimitConfig{Period: hour, Max: 10, Mode: sliding()}))
	req := Request{Subject: "alice"}
	admitN(t, e, t0.Add(59*time.Minute), req, 10)
	if d := chargeAt(t, e, t0.Add(time.Hour+time.Second), req); d.Allowed {
		t.Fatal("sliding window admitted right after a full previous window")
	}
	// Half-way through the next hour the previous 10 weigh 5: five more fit.
	admitN(t, e, t0.Add(90*time.Minute), req, 5)
	if d := chargeAt(t, e, t0.Add(90*time.Minute), req); d.Allowed {
		t.Fatal("sliding window admitted a sixth request half-way through")
	}
}

func TestWindowStartAndEnd(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	tests := []struct {
		name       string
		at         time.Time
		period     Period
		loc        *time.Location
		start, end time.Time
	}{
		{"week starts Monday", time.Date(2026, 3, 8, 15, 0, 0, 0, time.UTC), Period{Calendar: "week"}, time.UTC,
			time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)},
		{"month December to January", time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), month, time.UTC,
			time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"day in New York fall back is 25h", time.Date(2026, 11, 1, 12, 0, 0, 0, ny), day, ny,
			time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 5, 0, 0, 0, time.UTC)},
		{"epoch aligned duration", time.Date(2026, 3, 2, 10, 7, 0, 0, time.UTC), Period{Every: 10 * time.Minute}, time.UTC,
			time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 10, 10, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := windowStart(tt.at.UnixNano(), tt.period, tt.loc)
			if s != tt.start.UnixNano() {
				t.Errorf("start %s, want %s", time.Unix(0, s).UTC(), tt.start.UTC())
			}
			if e := windowEnd(s, tt.period, tt.loc); e != tt.end.UnixNano() {
				t.Errorf("end %s, want %s", time.Unix(0, e).UTC(), tt.end.UTC())
			}
		})
	}
}

// TestClockGoingBackwards keeps counting in the current window when a
// request carries an earlier time than the last one (clock skew between
// callers of ChargeAt).
func TestClockGoingBackwards(t *testing.T) {
	for _, mode := range []WindowMode{WindowFixed, WindowSliding} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, oneTier(LimitConfig{Period: minute, Max: 3, Mode: &mode}))
			req := Request{Subject: "alice"}
			admitN(t, e, t0.Add(30*time.Second), req, 2)
			admitN(t, e, t0.Add(-10*time.Second), req, 1)
			if d := chargeAt(t, e, t0.Add(-20*time.Second), req); d.Allowed {
				t.Fatal("fourth request admitted with a limit of 3")
			}
		})
	}
}

func TestPeriodForms(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     Period
		wantJSON string
	}{
		{name: "calendar", in: "Hour", want: Period{Calendar: CalendarHour, Every: time.Hour},
			wantJSON: `{"Calendar":"hour","Every":3600000000000}`},
		{name: "month", in: "month", want: Period{Calendar: CalendarMonth, Every: 30 * 24 * time.Hour},
			wantJSON: `{"Calendar":"month","Every":2592000000000000}`},
		{name: "second", in: "second", want: Period{Every: time.Second}, wantJSON: `{"Calendar":"","Every":1000000000}`},
		{name: "duration", in: "15m", want: Period{Every: 15 * time.Minute}, wantJSON: `{"Calendar":"","Every":900000000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePeriod(tt.in)
			if err != nil || p != tt.want {
				t.Fatalf("ParsePeriod(%q) = %+v, %v; want %+v", tt.in, p, err, tt.want)
			}
			b, err := json.Marshal(p)
			if err != nil || string(b) != tt.wantJSON {
				t.Fatalf("json.Marshal(%+v) = %s, %v; want %s", p, b, err, tt.wantJSON)
			}
			var back Period
			if err := json.Unmarshal(b, &back); err != nil || back != p {
				t.Fatalf("json.Unmarshal(%s) = %+v, %v; want %+v", b, back, err, p)
			}
			if got, err := ParsePeriod(p.String()); err != nil || got != p {
				t.Fatalf("ParsePeriod(%q) = %+v, %v; want %+v", p.String(), got, err, p)
			}
		})
	}
	if c, err := ParseCalendar("fortnight"); err == nil {
		t.Errorf("ParseCalendar(fortnight) = %q, want an error", c)
	}
	if err := CheckPeriod(Period{Calendar: "fortnight"}); err == nil {
		t.Error("CheckPeriod accepted an unknown calendar period")
	}
}
