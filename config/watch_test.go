package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
)

// applied records the configurations a Watcher applies.
type applied struct {
	mu    sync.Mutex
	files []*File
	fail  error
}

func (a *applied) apply(f *File) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.files = append(a.files, f)
	return nil
}

// lastPerHour returns freemium's api_calls_per_hour in the last applied
// config and how many were applied.
func (a *applied) lastPerHour() (int64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.files) == 0 {
		return 0, 0
	}
	return a.files[len(a.files)-1].QuotaManager.Tiers["freemium"].APICallsPerHour, len(a.files)
}

func tierYAML(perHour string) []byte {
	return []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: " + perHour + ", priority: low}\n")
}

// eventually polls cond until it holds, for file-system events that arrive
// asynchronously; it fails the test after 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startWatcher runs a Watcher on path until the test ends.
func startWatcher(t *testing.T, path string, opts LoadOptions, a *applied) *Watcher {
	t.Helper()
	return startWatcherSettle(t, path, opts, a, 50*time.Millisecond)
}

// startWatcherSettle is startWatcher with the given Settle.
func startWatcherSettle(t *testing.T, path string, opts LoadOptions, a *applied, settle time.Duration) *Watcher {
	t.Helper()
	w := NewWatcher(path, opts, a.apply, nil)
	w.Debounce = 20 * time.Millisecond
	w.Settle = settle
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})
	select {
	case <-w.watching:
	case err := <-done:
		t.Fatalf("Run() = %v before watching", err)
	}
	return w
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := startWatcher(t, path, LoadOptions{}, &a)

	writeFile(t, path, tierYAML("20"))
	eventually(t, "the valid edit is applied", func() bool { n, _ := a.lastPerHour(); return n == 20 })
	if st := w.Status(); st.Generation != 1 || st.LastError != "" || st.LastSuccess.IsZero() {
		t.Errorf("status after a valid edit = %+v", st)
	}

	writeFile(t, path, tierYAML("-5"))
	eventually(t, "the invalid edit is refused", func() bool { return w.Status().Failures == 1 })
	st := w.Status()
	wantErr := "config: " + path + ": quota_manager.tiers.freemium.api_calls_per_hour: must be > 0, got -5"
	if st.LastError != wantErr || st.Generation != 1 {
		t.Errorf("status after an invalid edit = %+v, want generation 1 and error %q", st, wantErr)
	}
	if n, count := a.lastPerHour(); n != 20 || count != 1 {
		t.Errorf("an invalid edit was applied: per hour %d after %d applies", n, count)
	}

	// An editor that writes a new file and renames it over the old one.
	tmp := filepath.Join(dir, ".quotagate.yaml.swp")
	writeFile(t, tmp, tierYAML("30"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the renamed file is applied", func() bool { n, _ := a.lastPerHour(); return n == 30 })
	if st := w.Status(); st.Generation != 2 || st.LastError != "" || st.Failures != 1 {
		t.Errorf("status after the rename = %+v", st)
	}
}

func TestWatcherFollowsConfigMapSwap(t *testing.T) {
	// A Kubernetes ConfigMap volume: quotagate.yaml -> ..data/quotagate.yaml,
	// ..data -> ..<timestamp>, and an update swaps ..data atomically.
	dir := t.TempDir()
	version := func(name string, data []byte) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "quotagate.yaml"), data)
	}
	version("..2026_11_27_10_00_00.1", tierYAML("10"))
	if err := os.Symlink("..2026_11_27_10_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "quotagate.yaml")
	if err := os.Symlink("..data/quotagate.yaml", path); err != nil {
		t.Fatal(err)
	}
	var a applied
	startWatcher(t, path, LoadOptions{}, &a)

	// Each update as the kubelet makes it: a new timestamped directory, a
	// "..data_tmp" link to it renamed over "..data", the old one removed.
	// The second and third swaps need the watches re-added after the first.
	old := "..2026_11_27_10_00_00.1"
	for i, perHour := range []string{"40", "50", "60"} {
		next := fmt.Sprintf("..2026_11_27_10_0%d_00.%d", i+5, i+2)
		version(next, tierYAML(perHour))
		if err := os.Symlink(next, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
		old = next
		want, _ := strconv.ParseInt(perHour, 10, 64)
		eventually(t, "swap "+perHour+" is applied", func() bool { n, _ := a.lastPerHour(); return n == want })
	}
	// An in-place edit of the current version's file (kubectl cp, a debug
	// session) is followed too: its directory is watched.
	writeFile(t, filepath.Join(dir, old, "quotagate.yaml"), tierYAML("70"))
	eventually(t, "an edit inside the current version is applied", func() bool { n, _ := a.lastPerHour(); return n == 70 })
}

func TestWatcherReloadOnRequest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := startWatcher(t, path, LoadOptions{}, &a)

	// SIGHUP reloads even an unchanged file.
	w.Reload()
	eventually(t, "the requested reload is applied", func() bool { return w.Status().Generation == 1 })
	w.Reload()
	eventually(t, "the second requested reload is applied", func() bool { return w.Status().Generation == 2 })
	if _, count := a.lastPerHour(); count != 2 {
		t.Errorf("applied %d times, want 2", count)
	}
}

func TestWatcherSkipsUnchangedContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := NewWatcher(path, LoadOptions{}, a.apply, nil)
	if err := w.reload(false); err != nil {
		t.Fatal(err)
	}
	first := w.Status()
	if err := w.reload(false); err != nil { // a touch or chmod: same bytes
		t.Fatal(err)
	}
	if st := w.Status(); st != first {
		t.Errorf("an unchanged file was reloaded: %+v, then %+v", first, st)
	}
	if err := w.ReloadNow(); err != nil {
		t.Fatal(err)
	}
	if st := w.Status(); st.Generation != 2 {
		t.Errorf("ReloadNow did not force a reload: %+v", st)
	}
}

func TestWatcherApplyFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	a := applied{fail: errors.New("engine: invalid config")}
	w := NewWatcher(path, LoadOptions{}, a.apply, nil)
	err := w.ReloadNow()
	want := "config: " + path + ": the new configuration was not applied: engine: invalid config"
	if err == nil || err.Error() != want {
		t.Fatalf("ReloadNow() = %v, want %q", err, want)
	}
	if st := w.Status(); st.Failures != 1 || st.Generation != 0 || st.LastError != want {
		t.Errorf("status = %+v", st)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.ReloadNow(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ReloadNow() on a missing file = %v", err)
	}
}

func TestWatcherDecrypts(t *testing.T) {
	dir, keyDir := t.TempDir(), t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(keyDir, "id.txt")
	writeFile(t, idFile, []byte(id.String()+"\n"))
	path := filepath.Join(dir, "quotagate.yaml.age")
	encrypt := func(perHour string) []byte {
		var buf bytes.Buffer
		if err := Encrypt(&buf, tierYAML(perHour), EncryptOptions{Recipients: []string{id.Recipient().String()}}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	writeFile(t, path, encrypt("10"))
	var a applied
	startWatcher(t, path, LoadOptions{IdentityFile: idFile}, &a)
	writeFile(t, path, encrypt("50"))
	eventually(t, "the encrypted edit is applied", func() bool { n, _ := a.lastPerHour(); return n == 50 })
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the watched directory holds %d files, want only the encrypted config", len(entries))
	}
}

// identityYAML is a configuration whose last block, identity, is what a
// half-written copy lacks.
func identityYAML(perHour string) []byte {
	return []byte(string(tierYAML(perHour)) + "identity:\n  sources: [header]\n  header: {name: x-user-id, trusted: true}\n")
}

func TestWatcherNeverAppliesHalfWrittenFile(t *testing.T) {
	full := identityYAML("20")
	cut := bytes.Index(full, []byte("identity:"))
	for _, tc := range []struct {
		name string
		half []byte // valid on its own, or not
	}{
		{"half is valid on its own", full[:cut]},
		{"half does not parse", full[:cut+len("identity:\n  sources: [hea")]},
		{"half ends mid-key", full[:cut-len(" priority: low}\n")]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "quotagate.yaml")
			writeFile(t, path, identityYAML("10"))
			var a applied
			// Settle is far longer than the writer's pause, which is far
			// longer than Debounce: the first look sees the half file, the
			// second sees it changed and waits again.
			w := startWatcherSettle(t, path, LoadOptions{}, &a, time.Second)

			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.half); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * w.Debounce) // a pause longer than the debounce
			if _, err := f.Write(full[len(tc.half):]); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the whole file is applied", func() bool { n, _ := a.lastPerHour(); return n == 20 })
			a.mu.Lock()
			for i, f := range a.files {
				if !f.Identity.Header.Trusted {
					t.Errorf("applied config %d lacks the identity block: a half-written file was applied", i)
				}
			}
			a.mu.Unlock()
			if st := w.Status(); st.Failures != 0 || st.Generation != 1 {
				t.Errorf("status = %+v, want one reload and no refusal for a file still being written", st)
			}
		})
	}
}

func TestWatcherRefusesStableInvalidFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	w := startWatcher(t, path, LoadOptions{}, &a)
	writeFile(t, path, []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 1"))
	eventually(t, "the stable invalid file is refused", func() bool { return w.Status().Failures == 1 })
	if _, n := a.lastPerHour(); n != 0 {
		t.Errorf("an invalid file was applied")
	}
}

func TestWatcherFollowsSymlinkElsewhere(t *testing.T) {
	// The configured path is a link into another directory, whose file is
	// edited in place and then re-pointed to a third directory.
	linkDir, dataDir, otherDir := t.TempDir(), t.TempDir(), t.TempDir()
	target := filepath.Join(dataDir, "real.yaml")
	writeFile(t, target, tierYAML("10"))
	path := filepath.Join(linkDir, "quotagate.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	var a applied
	startWatcher(t, path, LoadOptions{}, &a)

	writeFile(t, target, tierYAML("20"))
	eventually(t, "an edit of the link's target is applied", func() bool { n, _ := a.lastPerHour(); return n == 20 })

	other := filepath.Join(otherDir, "next.yaml")
	writeFile(t, other, tierYAML("30"))
	tmp := filepath.Join(linkDir, ".tmp-link")
	if err := os.Symlink(other, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the re-pointed link is applied", func() bool { n, _ := a.lastPerHour(); return n == 30 })
	writeFile(t, other, tierYAML("40"))
	eventually(t, "an edit of the new target is applied", func() bool { n, _ := a.lastPerHour(); return n == 40 })
}

func TestWatcherRequireEncryptionIsSticky(t *testing.T) {
	dir, keyDir := t.TempDir(), t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(keyDir, "id.txt")
	writeFile(t, idFile, []byte(id.String()+"\n"))
	encrypt := func(plain []byte) []byte {
		var buf bytes.Buffer
		if err := Encrypt(&buf, plain, EncryptOptions{Recipients: []string{id.Recipient().String()}}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	required := func(perHour string) []byte {
		return append([]byte("require_encryption: true\n"), tierYAML(perHour)...)
	}
	path := filepath.Join(dir, "quotagate.yaml")
	replace := func(data []byte) { // as mv does
		tmp := filepath.Join(dir, ".next")
		writeFile(t, tmp, data)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		atStart   bool // the process started with require_encryption
		firstFile []byte
	}{
		{"started with require_encryption", true, encrypt(tierYAML("10"))},
		{"a reload set require_encryption", false, encrypt(required("10"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, path, encrypt(required("5")))
			var a applied
			w := startWatcher(t, path, LoadOptions{IdentityFile: idFile, RequireEncryption: tc.atStart}, &a)
			replace(tc.firstFile)
			eventually(t, "the encrypted file is applied", func() bool { n, _ := a.lastPerHour(); return n == 10 })

			replace(tierYAML("99")) // plaintext, without require_encryption
			eventually(t, "the plaintext file is refused", func() bool { return w.Status().Failures == 1 })
			if st := w.Status(); !strings.Contains(st.LastError, "not encrypted") || !strings.Contains(st.LastError, "require_encryption") {
				t.Errorf("LastError = %q, want it to say the file is not encrypted and require_encryption is in force", st.LastError)
			}
			// An encrypted file that does not set it does not lift it.
			replace(encrypt(tierYAML("30")))
			eventually(t, "the encrypted file is applied", func() bool { n, _ := a.lastPerHour(); return n == 30 })
			replace(tierYAML("98"))
			eventually(t, "the second plaintext file is refused", func() bool { return w.Status().Failures == 2 })
			if n, _ := a.lastPerHour(); n != 30 {
				t.Errorf("api_calls_per_hour = %d after plaintext files, want 30: a plaintext file was applied", n)
			}
		})
	}
}

func TestWatcherThroughSymlinkedDirectory(t *testing.T) {
	// The configured directory is itself a link (/etc/quotagate -> a
	// volume): one directory, reached by two names.
	realDir, links := t.TempDir(), t.TempDir()
	dir := filepath.Join(links, "quotagate")
	if err := os.Symlink(realDir, dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "quotagate.yaml")
	writeFile(t, path, tierYAML("10"))
	var a applied
	startWatcher(t, path, LoadOptions{}, &a)
	writeFile(t, filepath.Join(realDir, "quotagate.yaml"), tierYAML("20"))
	eventually(t, "an edit through the real directory is applied", func() bool { n, _ := a.lastPerHour(); return n == 20 })
	tmp := filepath.Join(dir, ".next")
	writeFile(t, tmp, tierYAML("30"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a rename through the link is applied", func() bool { n, _ := a.lastPerHour(); return n == 30 })
	writeFile(t, path, tierYAML("40"))
	eventually(t, "a later edit is still seen", func() bool { n, _ := a.lastPerHour(); return n == 40 })
}
