package config

import (
	"fmt"
	"log/slog"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("2s",
// "1m30s") in configuration files, so that every duration in a file reads
// and fails alike ("invalid duration ...: want a Go duration such as 2s or
// 1m30s"). The zero value is zero.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d as time.Duration formats it.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string such as "5s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as 2s or 1m30s", b)
	}
	*d = Duration(v)
	return nil
}

// Secret is a string from a configuration file that is never printed: fmt,
// slog and JSON encoding show it as "REDACTED". It decodes from a plain
// JSON string. Code that must write a configuration file back works on the
// file's bytes, not on a decoded File.
type Secret string

// String returns "REDACTED", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString is String, so that %#v does not print the secret either.
func (s Secret) GoString() string { return s.String() }

// LogValue keeps the secret out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText writes "REDACTED", so that a File encoded as JSON (by a log
// handler, or an admin endpoint) does not carry the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
