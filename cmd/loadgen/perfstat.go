package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// perfCounts are the CPU cycles and instructions that perf stat counted
// for the server processes over the measured window. Instructions hardly
// vary from run to run however noisy the machine is, which CPU time does
// by tens of percent on a shared host; but they do not see memory stalls,
// and on a virtual machine the counting itself slows every context switch
// (the hypervisor traps the counter registers), so CPU time measured with
// --perf is inflated. They are a cross-check, measured in a run of their
// own.
type perfCounts struct {
	Cycles, Instructions float64
}

// perfCounter runs `perf stat` attached to the server processes.
type perfCounter struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startPerf attaches `perf stat` (at path) to pids, counting cycles and
// instructions, user and kernel, until stop. An empty path counts nothing
// (a nil counter).
func startPerf(path string, pids []int) (*perfCounter, error) {
	if path == "" {
		return nil, nil
	}
	if len(pids) == 0 {
		return nil, errors.New("loadgen: --perf needs --server-pid: the processes to count")
	}
	ids := make([]string, len(pids))
	for i, p := range pids {
		ids[i] = strconv.Itoa(p)
	}
	pc := &perfCounter{cmd: exec.Command(path, "stat", "-x", ",", "-e", "cycles,instructions", "-p", strings.Join(ids, ","))}
	pc.cmd.Stderr = &pc.out // perf stat writes its counts to stderr
	if err := pc.cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: start %s stat: %w (install linux-perf, or leave --perf out)", path, err)
	}
	// perf attaches within milliseconds; counting from a little after the
	// window opens errs by far less than the runs differ.
	time.Sleep(20 * time.Millisecond)
	return pc, nil
}

// stop ends the count (SIGINT, as perf stat expects) and returns it.
func (pc *perfCounter) stop() (perfCounts, error) {
	if pc == nil {
		return perfCounts{}, nil
	}
	if err := pc.cmd.Process.Signal(os.Interrupt); err != nil {
		return perfCounts{}, fmt.Errorf("loadgen: stop perf stat: %w", err)
	}
	werr := pc.cmd.Wait() // interrupted, perf stat may exit non-zero
	c, err := parsePerfCSV(pc.out.String())
	if err != nil && werr != nil {
		return perfCounts{}, fmt.Errorf("%w (perf stat: %v)", err, werr)
	}
	return c, err
}

// parsePerfCSV reads the counts out of `perf stat -x ,` output: one line
// per event, "value,unit,event,...". Events perf could not count
// ("<not supported>", "<not counted>") are an error: a ratio of partial
// counts would mislead.
func parsePerfCSV(out string) (perfCounts, error) {
	var c perfCounts
	var seen int
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 3 {
			continue
		}
		event := strings.SplitN(f[2], ":", 2)[0] // "cycles:u" on some kernels
		var dst *float64
		switch event {
		case "cycles":
			dst = &c.Cycles
		case "instructions":
			dst = &c.Instructions
		default:
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return perfCounts{}, fmt.Errorf("loadgen: perf stat could not count %s (%q); this machine's PMU may not support it: leave --perf out", event, f[0])
		}
		*dst += v
		seen++
	}
	if c.Cycles == 0 || seen == 0 {
		return perfCounts{}, fmt.Errorf("loadgen: no cycle count in perf stat's output: %q", strings.TrimSpace(out))
	}
	return c, nil
}
