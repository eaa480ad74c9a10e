package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/quotagate/quotagate/engine"
)

// FieldError is one problem with one field of a configuration file. Its
// Path locates the field in the file, e.g.
// quota_manager.tiers.freemium.priority or routes[2].method. It is
// engine.FieldError, the type every component's Validate reports with
// paths relative to its options, so that the wiring only prefixes them.
type FieldError = engine.FieldError

// ValidationError lists every problem found in a configuration, in the
// order found. Parse, Load and Validate return it (possibly wrapped) so that
// callers can show each problem.
type ValidationError struct {
	// File names the file the problems are in; empty when unknown.
	File     string
	Problems []*FieldError
}

// maxListedProblems is how many problems ValidationError.Error lists.
const maxListedProblems = 20

// Error lists the problems, one per line after the first when there are
// several, and at most maxListedProblems of them: the message goes to logs
// and status pages. `quotagate config validate` lists every one.
func (e *ValidationError) Error() string {
	prefix := "config: "
	if e.File != "" {
		prefix += e.File + ": "
	}
	if len(e.Problems) == 1 {
		return prefix + e.Problems[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s%d problems:", prefix, len(e.Problems))
	for _, p := range e.Problems[:min(len(e.Problems), maxListedProblems)] {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	if more := len(e.Problems) - maxListedProblems; more > 0 {
		fmt.Fprintf(&b, "\n  … and %d more (quotagate config validate lists them all)", more)
	}
	return b.String()
}

// Unwrap returns the problems, for errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects FieldErrors. The zero value is ready to use.
type problems struct {
	list []*FieldError
	// mismatched is set when a value had the wrong type for its field.
	mismatched bool
	// mismatches are the paths of those values.
	mismatches []string
}

// addf adds a problem at path; a long value it quotes (%q) is clipped
// (engine.Quotef).
func (p *problems) addf(path, format string, args ...any) {
	p.list = append(p.list, &FieldError{Path: path, Problem: engine.Quotef(format, args...)})
}

// addErr adds the FieldErrors in err, or err itself as a problem without a
// path when it holds none.
func (p *problems) addErr(err error) {
	if err == nil {
		return
	}
	fes := engine.FieldErrors(err)
	if len(fes) == 0 {
		fes = []*FieldError{{Problem: err.Error()}}
	}
	p.list = append(p.list, fes...)
}

// mismatchf adds a problem with n, a value of the wrong type, and marks it
// so that decoding leaves its field at the default.
func (p *problems) mismatchf(n *node, path, format string, args ...any) {
	n.mistyped = true
	p.mismatched = true
	p.mismatches = append(p.mismatches, path)
	p.addf(path, format, args...)
}

// underMismatch reports whether path is a mistyped value, inside one or
// contains one: a problem there may come from the default left in its
// place.
func (p *problems) underMismatch(path string) bool {
	for _, m := range p.mismatches {
		if within(path, m) || within(m, path) {
			return true
		}
	}
	return false
}

// within reports whether path is base or a field or element inside it.
func within(path, base string) bool {
	if !strings.HasPrefix(path, base) {
		return false
	}
	rest := path[len(base):]
	return rest == "" || rest[0] == '.' || rest[0] == '[' || base == ""
}

// err returns nil or a *ValidationError with every problem collected.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// field returns the path of key inside path. Keys that are not plain
// identifiers are quoted in brackets so the path stays unambiguous.
func field(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the path of element i of the list at path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// suggest returns the candidate closest to s by edit distance, or "" if
// none is close enough to be a plausible typo.
func suggest(s string, candidates []string) string {
	best, bestDist := "", len(s)/3+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
