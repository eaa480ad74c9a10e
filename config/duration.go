package config

import "github.com/quotagate/quotagate/notify"

// Duration is a time.Duration written as a Go duration string ("2s",
// "1m30s") in configuration files. The zero value is zero. It is the
// alerts block's notify.Duration, so that every duration in a file reads
// and fails alike ("invalid duration ...: want a Go duration such as 2s
// or 1m30s").
type Duration = notify.Duration
