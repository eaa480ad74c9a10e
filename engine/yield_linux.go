package engine

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// yield parks the calling goroutine for at least d, and until the
// scheduler has polled the network: it waits for a timerfd to expire
// through the runtime's network poller, which reports it only when it
// polls, and with it whatever requests arrived meanwhile. A timed sleep
// would instead make the goroutine runnable when its timer fires, ahead of
// any network input while other goroutines keep the processor busy (see
// Pacer). Should the timerfd fail, yield sleeps.
func yield(d time.Duration) {
	t, ok := takeTimerfd()
	if !ok {
		time.Sleep(d)
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d.Nanoseconds(), 1))}
	var count [8]byte // the expirations, which yield does not need
	failed := unix.TimerfdSettime(t.fd, 0, &spec, nil) != nil
	if !failed {
		_, err := t.file.Read(count[:])
		failed = err != nil
	}
	if failed {
		// A timerfd that failed is not reused: the next pause makes a
		// fresh one rather than sleeping every time from now on.
		t.file.Close()
		time.Sleep(d)
		return
	}
	timerfds.mu.Lock()
	timerfds.free = append(timerfds.free, t)
	timerfds.mu.Unlock()
}

// timerfd is a timer file descriptor registered with the network poller.
// fd is kept apart because os.File.Fd would put the file in blocking
// mode, taking it off the poller.
type timerfd struct {
	file *os.File
	fd   int
}

// timerfds are the timerfds not in use: one for each pause that ran at
// the same time as another, so a handful for the life of the process.
var timerfds struct {
	mu   sync.Mutex
	free []timerfd
}

func takeTimerfd() (timerfd, bool) {
	timerfds.mu.Lock()
	if n := len(timerfds.free); n > 0 {
		t := timerfds.free[n-1]
		timerfds.free = timerfds.free[:n-1]
		timerfds.mu.Unlock()
		return t, true
	}
	timerfds.mu.Unlock()
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return timerfd{}, false
	}
	// A non-blocking descriptor makes a file that the poller watches;
	// only such a file takes a deadline.
	f := os.NewFile(uintptr(fd), "pacer-timerfd")
	if f.SetReadDeadline(time.Time{}) != nil {
		f.Close()
		return timerfd{}, false
	}
	return timerfd{file: f, fd: fd}, true
}
