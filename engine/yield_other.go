//go:build !linux

package engine

import "time"

// yield sleeps for d: without a timerfd there is no way to wait on the
// network poller itself, so a pause may end before the network is polled
// (see Pacer).
func yield(d time.Duration) { time.Sleep(d) }
