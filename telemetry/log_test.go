package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    slog.Level
		wantErr bool
	}{
		{name: "empty is info", in: "", want: slog.LevelInfo},
		{name: "debug", in: "debug", want: slog.LevelDebug},
		{name: "upper case", in: "WARN", want: slog.LevelWarn},
		{name: "warning", in: "warning", want: slog.LevelWarn},
		{name: "error", in: "error", want: slog.LevelError},
		{name: "offset", in: "info+2", want: slog.LevelInfo + 2},
		{name: "bad", in: "loud", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLevel(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "telemetry: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	tests := []struct {
		name           string
		rate           float64
		at             []time.Duration // offsets from t0
		wantOK         []bool
		wantSuppressed int64 // reported by the last call that passed
	}{
		{name: "burst then refuse", rate: 2, at: []time.Duration{0, 0, 0, 0}, wantOK: []bool{true, true, false, false}},
		{name: "refills with time and reports suppressed", rate: 2, at: []time.Duration{0, 0, 0, 0, time.Second},
			wantOK: []bool{true, true, false, false, true}, wantSuppressed: 2},
		{name: "fractional rate has a burst of one", rate: 0.5, at: []time.Duration{0, time.Second, 2 * time.Second},
			wantOK: []bool{true, false, true}, wantSuppressed: 1},
		{name: "clock going back does not refill", rate: 1, at: []time.Duration{time.Second, 0, 0},
			wantOK: []bool{true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.rate)
			var lastSuppressed int64
			for i, off := range tt.at {
				ok, s := l.allow(t0.Add(off))
				if ok != tt.wantOK[i] {
					t.Fatalf("call %d at +%v: ok = %v, want %v", i, off, ok, tt.wantOK[i])
				}
				if ok {
					lastSuppressed = s
				}
			}
			if lastSuppressed != tt.wantSuppressed {
				t.Errorf("suppressed = %d, want %d", lastSuppressed, tt.wantSuppressed)
			}
		})
	}
}

func TestRejectionLogsAreRateLimited(t *testing.T) {
	var logs bytes.Buffer
	now := t0
	r, err := NewRecorder(nil, RecorderOptions{
		Logger: NewLogger(&logs, slog.LevelInfo), LogRejectionsPerSecond: 3,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		r.Record(context.Background(), now, fullDenial())
	}
	r.Record(context.Background(), now, Decision{Outcome: OutcomeAllow})
	if n := strings.Count(logs.String(), "\n"); n != 3 {
		t.Errorf("%d lines after a flood of 1000 rejections in one instant, want 3", n)
	}
	logs.Reset()
	now = now.Add(time.Second)
	r.Record(context.Background(), now, fullDenial())
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if line["suppressed"] != float64(997) || line["msg"] != "quota rejected" || line["subject_hash"] != HashSubject("alice") {
		t.Errorf("line = %v, want suppressed 997, msg quota rejected, the hashed subject", line)
	}
}

func TestLoggerWithoutSpanHasNoTraceIDs(t *testing.T) {
	var logs bytes.Buffer
	NewLogger(&logs, slog.LevelDebug).With("k", "v").WithGroup("g").InfoContext(context.Background(), "hello", "a", 1)
	if s := logs.String(); strings.Contains(s, "trace_id") || !strings.Contains(s, `"g":{"a":1}`) {
		t.Errorf("line %q: want no trace_id and the group kept", s)
	}
}
