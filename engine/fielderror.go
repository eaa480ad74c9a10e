package engine

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem with one field of a configuration: what every
// component's Validate reports, so that the wiring can place it in the
// configuration file by prefixing its path, without parsing messages. It
// lives in engine because engine is the leaf every component imports.
type FieldError struct {
	// Path locates the field, relative to the options that were validated:
	// tiers.freemium.priority, tokens[2].sha256, or routes[1].method. An
	// empty Path means the options as a whole.
	Path string
	// Problem says what is wrong, quoting the offending value, and how to
	// fix it.
	Problem string
}

// Bounds of FieldError.Error, in bytes: a path or a problem that quotes a
// long value from a file or a request is cut there, so that one bad value
// cannot fill a log line, a terminal or a status page.
const (
	maxPathBytes    = 200
	maxProblemBytes = 1000
)

// Error returns "path: problem", or the problem alone when Path is empty,
// each cut to a bound (see Clip).
func (e *FieldError) Error() string {
	if e.Path == "" {
		return Clip(e.Problem, maxProblemBytes)
	}
	return Clip(e.Path, maxPathBytes) + ": " + Clip(e.Problem, maxProblemBytes)
}

// Clip returns s when it is at most n bytes long; else its first n bytes
// at most, ending on a whole UTF-8 character, and how many bytes were cut:
// "aaaa…(+2097148 bytes)". Messages that quote what a client or a file
// sent clip it, so that their size does not follow the input's.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(+" + strconv.Itoa(len(s)-cut) + " bytes)"
}

// MaxQuotedBytes is how much of a value Quotef quotes.
const MaxQuotedBytes = 64

// Quotef is fmt.Sprintf, except that a string quoted with %q longer than
// MaxQuotedBytes is clipped first (Clip). Messages quote with %q what a
// client or a file sent; the rest of the message (what was expected, how
// to fix it) is kept whatever the value's size.
func Quotef(format string, args ...any) string {
	var clipped []any
	arg := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		// Flags, width and precision, up to the verb.
		for i++; i < len(format) && strings.IndexByte("+-# 0123456789.*", format[i]) >= 0; i++ {
			if format[i] == '*' {
				arg++
			}
		}
		if i >= len(format) || format[i] == '%' {
			continue
		}
		if s, ok := argString(args, arg); ok && format[i] == 'q' && len(s) > MaxQuotedBytes {
			if clipped == nil {
				clipped = append([]any(nil), args...)
			}
			clipped[arg] = Clip(s, MaxQuotedBytes)
		}
		arg++
	}
	if clipped != nil {
		args = clipped
	}
	return fmt.Sprintf(format, args...)
}

// argString returns args[i] if it is a string.
func argString(args []any, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	s, ok := args[i].(string)
	return s, ok
}

// FieldErrors returns every *FieldError in err's tree (joined with
// errors.Join or wrapped with %w), in order, depth first; nil when there is
// none.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// PrefixPath returns path inside base: base.path, base[0] for an index,
// or whichever of the two is not empty.
func PrefixPath(base, path string) string {
	switch {
	case base == "":
		return path
	case path == "":
		return base
	case strings.HasPrefix(path, "["):
		return base + path
	}
	return base + "." + path
}
