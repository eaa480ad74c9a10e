package main

import (
	"context"
	"testing"
	"time"
)

func TestNewPacer(t *testing.T) {
	tests := []struct {
		name         string
		rate         float64
		n, i         int
		wantInterval time.Duration
		wantOffset   time.Duration // of the first slot from now
	}{
		{name: "closed loop", rate: 0, n: 64, i: 3},
		{name: "first caller", rate: 1000, n: 10, i: 0, wantInterval: 10 * time.Millisecond},
		{name: "staggered caller", rate: 1000, n: 10, i: 5, wantInterval: 10 * time.Millisecond, wantOffset: 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			p := newPacer(tt.rate, tt.n, tt.i)
			if p.interval != tt.wantInterval {
				t.Errorf("interval = %v, want %v", p.interval, tt.wantInterval)
			}
			if tt.rate > 0 {
				if off := p.next.Sub(before); off < tt.wantOffset || off > tt.wantOffset+time.Second {
					t.Errorf("first slot %v from now, want %v", off, tt.wantOffset)
				}
			}
		})
	}
}

func TestPacerDoesNotBurstAfterFallingBehind(t *testing.T) {
	p := &pacer{interval: time.Hour, next: time.Now().Add(-10 * time.Hour)}
	before := time.Now()
	if err := p.wait(context.Background()); err != nil { // due at once: no sleep
		t.Fatal(err)
	}
	if p.next.Before(before.Add(time.Hour)) {
		t.Errorf("next slot %v: a late caller must start afresh from now, one interval on", p.next.Sub(before))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); err == nil { // an hour away: interrupted
		t.Error("wait on a cancelled context: want an error")
	}
}
