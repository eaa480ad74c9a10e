package engine

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestFieldErrors(t *testing.T) {
	a := &FieldError{Path: "tiers.free", Problem: "bad"}
	b := &FieldError{Path: "", Problem: "whole"}
	c := &FieldError{Path: "actions[0]", Problem: "worse"}
	tests := []struct {
		name string
		err  error
		want []*FieldError
	}{
		{name: "nil", err: nil, want: nil},
		{name: "plain error", err: errors.New("x"), want: nil},
		{name: "one", err: a, want: []*FieldError{a}},
		{name: "wrapped", err: fmt.Errorf("%w: %w", ErrInvalidConfig, a), want: []*FieldError{a}},
		{name: "joined in order", err: errors.Join(fmt.Errorf("p: %w", a), errors.New("no"), errors.Join(b, c)), want: []*FieldError{a, b, c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FieldErrors(tt.err); !slices.Equal(got, tt.want) {
				t.Errorf("FieldErrors = %v, want %v", got, tt.want)
			}
		})
	}
	if got := a.Error(); got != "tiers.free: bad" {
		t.Errorf("Error() = %q", got)
	}
	if got := b.Error(); got != "whole" {
		t.Errorf("Error() without a path = %q", got)
	}
}

func TestPrefixPath(t *testing.T) {
	for _, tt := range []struct{ base, path, want string }{
		{"admin", "tokens[0].sha256", "admin.tokens[0].sha256"},
		{"routes", "[2].method", "routes[2].method"},
		{"", "addr", "addr"},
		{"admin", "", "admin"},
	} {
		if got := PrefixPath(tt.base, tt.path); got != tt.want {
			t.Errorf("PrefixPath(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
		}
	}
}

func TestValidateReturnsFieldErrors(t *testing.T) {
	err := Rules{}.Validate()
	fes := FieldErrors(err)
	if len(fes) == 0 || fes[0].Path != "tiers" || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate(empty) = %v; want a FieldError at tiers wrapping ErrInvalidConfig", err)
	}
}

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 5, "short"},
		{"abcdef", 3, "abc…(+3 bytes)"},
		{"aé", 2, "a…(+2 bytes)"}, // never half a character
		{"é", 0, "…(+2 bytes)"},
		{"ab", -1, "…(+2 bytes)"},
	} {
		if got := Clip(tt.s, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestQuotef(t *testing.T) {
	long := strings.Repeat("x", 1000)
	clipped := strconv.Quote(Clip(long, MaxQuotedBytes))
	for _, tt := range []struct {
		name   string
		format string
		args   []any
		want   string
	}{
		{"short values as they are", "got %q, want %s", []any{"ab", "cd"}, `got "ab", want cd`},
		{"a long quoted value is clipped, the rest kept", "unknown tier %q; want one of %s", []any{long, "free"}, "unknown tier " + clipped + "; want one of free"},
		{"only what is quoted", "%s", []any{long}, long},
		{"after %% and a width", "100%% %5d %-3q %q", []any{7, "a", long}, `100%     7 "a" ` + clipped},
		{"a * width takes an argument", "%*d %q", []any{3, 7, long}, "  7 " + clipped},
		{"not a string", "%q", []any{'x'}, `'x'`},
		{"missing argument", "%q %q", []any{"a"}, `"a" %!q(MISSING)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quotef(tt.format, tt.args...); got != tt.want {
				t.Errorf("Quotef = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFieldErrorIsBounded(t *testing.T) {
	e := &FieldError{Path: "users." + strings.Repeat("k", 10_000), Problem: "bad " + strings.Repeat("v", 1<<20)}
	got := e.Error()
	if len(got) > maxPathBytes+maxProblemBytes+60 {
		t.Fatalf("Error() is %d bytes for a %d-byte path and a %d-byte problem", len(got), len(e.Path), len(e.Problem))
	}
	if !strings.HasPrefix(got, "users.kkk") || !strings.Contains(got, "…(+") || !strings.Contains(got, ": bad vvv") {
		t.Errorf("Error() = %.300q", got)
	}
}
