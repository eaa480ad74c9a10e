package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cpuTicks
		wantErr bool
	}{
		{
			name: "plain",
			in:   "1234 (quotagate) S 1 1234 1234 0 -1 4194560 2405 0 0 0 517 83 0 0 20 0 9 0 4711 1300000000 3000 18446744073709551615 1 1 0 0 0 0 0 0 16384 0 0 0 17 1 0 0 0 0 0\n",
			want: cpuTicks{User: 517, System: 83},
		},
		{
			name: "command name with spaces and parentheses",
			in:   "42 (my (odd) name) R 1 42 42 0 -1 0 0 0 0 0 7 9 0 0 20 0 1 0 1 0 0",
			want: cpuTicks{User: 7, System: 9},
		},
		{name: "no closing parenthesis", in: "42 (broken S 1 2 3", wantErr: true},
		{name: "too few fields", in: "42 (x) S 1 2 3 4 5", wantErr: true},
		{name: "utime not a number", in: "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 9 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadCPUOfThisProcess(t *testing.T) {
	self, err := readCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	byPID, err := readCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if byPID.Total() < self.Total() {
		t.Errorf("CPU of pid %d (%d ticks) read after /proc/self (%d ticks) went backwards", os.Getpid(), byPID.Total(), self.Total())
	}
	if _, err := readCPU(1 << 30); err == nil {
		t.Error("readCPU of a pid that cannot exist: want an error")
	}
}

func TestTicksToDuration(t *testing.T) {
	if got := ticksToDuration(250, 100); got != 2500*time.Millisecond {
		t.Errorf("250 ticks at 100/s = %v, want 2.5s", got)
	}
}
