package main

import (
	"bytes"
	"errors"
	"testing"
)

func TestGCHeapFloorFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantErr bool
	}{
		{name: "default", want: defaultGCHeapFloorMiB},
		{name: "flag", args: []string{"--gc-heap-floor", "256"}, want: 256},
		{name: "environment", env: map[string]string{"QUOTAGATE_GC_HEAP_FLOOR": "0"}, want: 0},
		{name: "negative", args: []string{"--gc-heap-floor", "-1"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseServeFlags(tt.args, func(k string) string { return tt.env[k] }, &bytes.Buffer{})
			if tt.wantErr {
				var ee exitError
				if !errors.As(err, &ee) || ee.code != 2 {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil || f.gcHeapFloorMiB != tt.want {
				t.Errorf("gc heap floor = %d, %v; want %d", f.gcHeapFloorMiB, err, tt.want)
			}
		})
	}
	if heapFloor(0) != nil || len(heapFloor(2)) != 2<<20 {
		t.Error("heapFloor(0) is not nil, or heapFloor(2) is not 2 MiB")
	}
}
