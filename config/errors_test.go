package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProblemsAreBounded: what a file holds sets how many problems it has
// and how long its values are, never how long the message of the error
// that logs and status pages show is; every problem stays in Problems.
func TestProblemsAreBounded(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	users := map[string]any{}
	for i := range 5000 {
		users[fmt.Sprintf("u%04d", i)] = map[string]any{"tier": "nope"}
	}
	data, err := json.Marshal(map[string]any{"quota_manager": map[string]any{
		"tiers":        map[string]any{"free": map[string]any{"api_calls_per_hour": 10}},
		"default_tier": long,
		long:           1,
		"users":        users,
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 5002 {
		t.Fatalf("Parse = %.300v, want 5002 problems", err)
	}
	msg := err.Error()
	if n := len(msg); n > 30_000 {
		t.Errorf("the error's message is %d bytes", n)
	}
	if want := "… and 4982 more (quotagate config validate lists them all)"; !strings.HasSuffix(msg, want) {
		t.Errorf("the message ends %q, want %q", msg[max(0, len(msg)-200):], want)
	}
	var tier string
	for _, p := range ve.Problems {
		if p.Path == "quota_manager.default_tier" {
			tier = p.Error()
		}
	}
	// The value is clipped; what to do about it is kept.
	if want := `…(+1048512 bytes)"; want one of free`; !strings.HasSuffix(tier, want) {
		t.Errorf("default_tier problem = %.200q…, want it to end %q", tier, want)
	}
}

func TestNotAnObjectQuotesLittle(t *testing.T) {
	_, err := Parse([]byte(strings.Repeat("a", 1<<20)))
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "must hold an object with a quota_manager key") {
		t.Errorf("Parse of a long scalar = %.300v", err)
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReadAllIsBounded: a configuration of MaxFileBytes is read, one byte
// more is refused, and nothing past that byte is read.
func TestReadAllIsBounded(t *testing.T) {
	if data, err := ReadAll(io.LimitReader(zeros{}, MaxFileBytes)); err != nil || len(data) != MaxFileBytes {
		t.Fatalf("ReadAll of MaxFileBytes = %d bytes, %v", len(data), err)
	}
	if _, err := ReadAll(zeros{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadAll of an endless reader = %v, want ErrTooLarge", err)
	}
}

// TestTooLargeIsRefusedOnLoadAndReload: a file past MaxFileBytes is
// refused with its name, at start and on reload, where the running
// configuration stays.
func TestTooLargeIsRefusedOnLoadAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := startWatcher(t, path, LoadOptions{}, &a)
	// Valid YAML up to its end, then zeros: a sparse file, nothing on disk.
	if err := os.Truncate(path, MaxFileBytes+1); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, LoadOptions{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load = %v, want ErrTooLarge naming the file", err)
	}
	eventually(t, "the reload is refused", func() bool { return w.Status().Failures >= 1 })
	if st := w.Status(); !strings.Contains(st.LastError, "larger than 64 MiB") {
		t.Errorf("LastError = %q, want the size named", st.LastError)
	}
	if _, n := a.lastPerHour(); n != 0 {
		t.Errorf("applied %d configurations, want none", n)
	}
}
