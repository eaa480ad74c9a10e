package engine

import "strings"

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

// Error returns "path: problem", or the problem alone when Path is empty.
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Problem
	}
	return e.Path + ": " + e.Problem
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
