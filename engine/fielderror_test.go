package engine

import (
	"errors"
	"fmt"
	"slices"
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
