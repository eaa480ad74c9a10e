package config

import (
	"errors"
	"strings"
	"testing"
)

// BenchmarkParse measures decoding, defaults and validation: the cost of
// a load or reload, which is off the request path.
func BenchmarkParse(b *testing.B) {
	for _, bb := range []struct {
		name string
		data []byte
	}{
		{name: "example-json", data: exampleJSON},
		{name: "default-yaml", data: Default()},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(bb.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzParse checks that no input makes Parse panic, and that whatever it
// accepts converts to engine.Rules.
// maxErrorMessageBytes bounds what Parse's error says: the listed
// problems, each a path and a problem clipped by FieldError.Error, and a
// line of header and of how many more there are.
const maxErrorMessageBytes = maxListedProblems*(200+1000+60) + 200

func FuzzParse(f *testing.F) {
	f.Add(exampleJSON)
	f.Add(Default())
	f.Add([]byte(richYAML))
	f.Add([]byte(`{"quota_manager": {"tiers": {"a": {"limits": [{"max": 1, "per": "1s"}]}}}, "x": [1, {"y": null}]}`))
	// Mistyped values beside invalid ones: decoded around, reported at once.
	f.Add([]byte("quota_manager:\n  tiers:\n    a: {api_calls_per_hour: ten, priority: urgent, limits: [{max: 1.5, per: [day]}]}\nstore: {durability: async, flush_interval: 5}\n"))
	f.Add([]byte(`{"quota_manager": {"tiers": {"a": {"api_calls_per_hour": "1"}}, "users": {"u": {"tier": 3}}}, "identity": {"header": {"trusted": true}}}`))
	// Long values, quoted by the problems they cause.
	f.Add([]byte(`{"quota_manager": {"tiers": {"a": {"api_calls_per_hour": 1}}, "default_tier": "` + strings.Repeat("x", 20000) + `", "` + strings.Repeat("k", 20000) + `": 1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			// The message is bounded whatever the input: values are
			// clipped and at most maxListedProblems are listed.
			if n := len(err.Error()); n > maxErrorMessageBytes {
				t.Fatalf("error message of %d bytes for %d bytes of input: %.300q", n, len(data), err)
			}
			// Every problem is reported at once, the same way each time,
			// each with a path and a description.
			if _, again := Parse(data); again == nil || again.Error() != err.Error() {
				t.Fatalf("Parse is not deterministic: %v, then %v", err, again)
			}
			var ve *ValidationError
			if errors.As(err, &ve) {
				if len(ve.Problems) == 0 {
					t.Fatal("a ValidationError with no problems")
				}
				for _, p := range ve.Problems {
					if p.Problem == "" {
						t.Fatalf("problem at %q says nothing", p.Path)
					}
				}
			}
			return
		}
		if _, err := file.Engine(); err != nil {
			t.Fatalf("Parse accepted a config that Engine rejects: %v", err)
		}
	})
}
