package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/engine"
)

// perHourCheck is a component check: it refuses a freemium tier above
// 100 calls an hour, at a path in the file.
func perHourCheck(f *File) error {
	if n := f.QuotaManager.Tiers["freemium"].APICallsPerHour; n > 100 {
		return errors.Join(
			fmt.Errorf("component: %w", &engine.FieldError{Path: "quota_manager.tiers.freemium.api_calls_per_hour", Problem: fmt.Sprintf("the component allows at most 100, got %d", n)}),
			&engine.FieldError{Path: "admin", Problem: "second problem"})
	}
	return nil
}

func TestParseWith(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		check func(*File) error
		want  []string // nil means valid
	}{
		{name: "no check", in: tierYAML("500")},
		{name: "check passes", in: tierYAML("50"), check: perHourCheck},
		{name: "check problems follow the file's", in: append(tierYAML("500"), "store: {kind: etcd}\n"...), check: perHourCheck, want: []string{
			`store.kind: unknown store "etcd"; want memory, sqlite or redis`,
			"quota_manager.tiers.freemium.api_calls_per_hour: the component allows at most 100, got 500",
			"admin: second problem",
		}},
		{name: "an error without field errors is one problem", in: tierYAML("5"), check: func(*File) error { return errors.New("no path here") },
			want: []string{"no path here"}},
		{name: "a problem under a mistyped value is left out", in: []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: ten}\n"),
			check: func(*File) error {
				return &engine.FieldError{Path: "quota_manager.tiers.freemium", Problem: "follows from the mistyped value"}
			}, want: []string{`quota_manager.tiers.freemium.api_calls_per_hour: want a whole number, got "ten"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWith(tt.in, tt.check)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ParseWith() = %v, want nil", err)
				}
				return
			}
			wantProblems(t, err, tt.want)
		})
	}
}

func TestLoadRunsCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.yaml")
	writeFile(t, path, tierYAML("500"))
	if _, err := Load(path, LoadOptions{}); err != nil {
		t.Fatalf("Load without a check = %v", err)
	}
	_, err := Load(path, LoadOptions{Check: perHourCheck})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != path || !strings.Contains(err.Error(), "config: "+path+": 2 problems:") {
		t.Fatalf("Load with a check = %v, want the check's problems in the file", err)
	}
}

func TestWatcherAppliesNothingThatFailsCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := startWatcher(t, path, LoadOptions{Check: perHourCheck}, &a)
	writeFile(t, path, tierYAML("500"))
	eventually(t, "the reload is refused", func() bool { return w.Status().Failures == 1 })
	if _, n := a.lastPerHour(); n != 0 {
		t.Fatalf("applied %d configurations, want none", n)
	}
	if st := w.Status(); !strings.Contains(st.LastError, "quota_manager.tiers.freemium.api_calls_per_hour: the component allows at most 100") {
		t.Errorf("LastError = %q, want the check's problem with its path", st.LastError)
	}
	writeFile(t, path, tierYAML("20"))
	eventually(t, "the valid edit is applied", func() bool { n, _ := a.lastPerHour(); return n == 20 })
}

func TestSecretIsNeverPrinted(t *testing.T) {
	f, err := Parse(append(tierYAML("10"), "  alerts: {webhook: {url: \"https://h.example/x\", secret: hunter2}, email: {password: pa55}}\n"...))
	if err != nil {
		t.Fatal(err)
	}
	a := f.QuotaManager.Alerts
	if a.Webhook.Secret != "hunter2" || a.Email.Password != "pa55" {
		t.Fatalf("decoded secrets %q, %q; want them as written", string(a.Webhook.Secret), string(a.Email.Password))
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "alerts", a, "secret", a.Webhook.Secret)
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%+v", a), fmt.Sprintf("%#v", a), logs.String(), string(out)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "pa55") {
			t.Errorf("secret printed: %s", s)
		}
	}
	if !strings.Contains(string(out), "REDACTED") {
		t.Errorf("JSON = %s, want the secrets shown as REDACTED", out)
	}
}

// wantProblems fails t unless err is a *ValidationError listing exactly
// want, in order, each as "path: problem".
func wantProblems(t *testing.T, err error, want []string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n got  %q\n want %q", got, want)
	}
}
