package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// cpuTicks is a process's user and system CPU time in clock ticks, as
// /proc/PID/stat reports them (fields 14 and 15). It counts every thread
// of the process, not its waited-for children.
type cpuTicks struct {
	User, System uint64
}

// Total returns user plus system ticks.
func (c cpuTicks) Total() uint64 { return c.User + c.System }

// parseStat extracts utime and stime from the contents of /proc/PID/stat.
// The command name (field 2) is in parentheses and may itself contain
// spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (cpuTicks, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return cpuTicks{}, fmt.Errorf("loadgen: /proc stat: no ')' closing the command name in %q", truncate(b))
	}
	// After ")" come field 3 (state), 4, ... so field N is rest[N-3].
	rest := bytes.Fields(b[end+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(rest) <= stime {
		return cpuTicks{}, fmt.Errorf("loadgen: /proc stat: %d fields after the command name, want at least %d", len(rest), stime+1)
	}
	u, err := strconv.ParseUint(string(rest[utime]), 10, 64)
	if err != nil {
		return cpuTicks{}, fmt.Errorf("loadgen: /proc stat: utime: %w", err)
	}
	s, err := strconv.ParseUint(string(rest[stime]), 10, 64)
	if err != nil {
		return cpuTicks{}, fmt.Errorf("loadgen: /proc stat: stime: %w", err)
	}
	return cpuTicks{User: u, System: s}, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// readCPU returns the CPU ticks of process pid; pid 0 means this process.
func readCPU(pid int) (cpuTicks, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cpuTicks{}, fmt.Errorf("loadgen: read CPU time of pid %d: %w (is the server still running?)", pid, err)
	}
	return parseStat(b)
}

// readCPUAll returns the summed CPU ticks of every pid.
func readCPUAll(pids []int) (cpuTicks, error) {
	var sum cpuTicks
	for _, pid := range pids {
		c, err := readCPU(pid)
		if err != nil {
			return cpuTicks{}, err
		}
		sum.User += c.User
		sum.System += c.System
	}
	return sum, nil
}

// ticksToDuration converts clock ticks at clkTck ticks per second.
func ticksToDuration(ticks uint64, clkTck int) time.Duration {
	return time.Duration(float64(ticks) / float64(clkTck) * float64(time.Second))
}
