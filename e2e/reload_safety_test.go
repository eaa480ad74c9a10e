package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
)

func TestReloadNeverAppliesHalfWrittenFile(t *testing.T) {
	waitOutsideHourEdge()
	path := filepath.Join(t.TempDir(), "quota.yaml")
	if err := os.WriteFile(path, []byte(reloadConfig(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, path)
	before := s.status(t)

	// Header-identified callers are checked all along: the half file has no
	// identity block, so applying it would answer them 401.
	var refused, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			sent.Add(1)
			if !s.allowed(t, "probe-"+strings.Repeat("x", i%40)) {
				refused.Add(1)
			}
		}
	})

	full := reloadConfig(5)
	cut := strings.Index(full, "identity:")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(full[:cut]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // three times the 200 ms debounce
	if _, err := f.WriteString(full[cut:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.waitReload(t, before)
	time.Sleep(300 * time.Millisecond) // a second reload would show by now
	close(stop)
	wg.Wait()
	st = s.status(t)
	if st.Config.Failures != 0 || st.Config.Generation != before.Config.Generation+1 || st.Config.LastError != "" {
		t.Errorf("status after a write with a pause = %+v; want one reload and no refusal", st.Config)
	}
	if n := refused.Load(); n != 0 {
		t.Errorf("%d of %d header-identified Checks were refused while the file was half written", n, sent.Load())
	}
	if strings.Contains(s.stderr.String(), "reload refused") {
		t.Errorf("a reload was refused while the file was being written:\n%s", s.stderr.String())
	}
	if !s.allowed(t, "capped") || !s.allowed(t, "capped") {
		t.Error("the whole file's limit of 5 for capped is not in force")
	}
}

func TestReloadFollowsConfigMapSwaps(t *testing.T) {
	waitOutsideHourEdge()
	// A Kubernetes ConfigMap volume: quota.yaml -> ..data/quota.yaml,
	// ..data -> ..<timestamp>; the kubelet swaps ..data atomically and
	// removes the old directory.
	dir := t.TempDir()
	version := func(name string, smallPerHour int) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "quota.yaml"), []byte(reloadConfig(smallPerHour)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_07_09_00_00.1", 1)
	if err := os.Symlink("..2026_12_07_09_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "quota.yaml")
	if err := os.Symlink("..data/quota.yaml", path); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, path)
	if !s.allowed(t, "capped") || s.allowed(t, "capped") {
		t.Fatal("the first version's limit of 1 is not enforced")
	}
	old := "..2026_12_07_09_00_00.1"
	for i, perHour := range []int{3, 6} {
		next := "..2026_12_07_09_0" + string(rune('1'+i)) + "_00.2"
		version(next, perHour)
		if err := os.Symlink(next, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		st := s.status(t)
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
		old = next
		if st = s.waitReload(t, st); st.Config.LastError != "" {
			t.Fatalf("swap %d was refused: %s", i+1, st.Config.LastError)
		}
	}
	// capped used 1 of its hour; the last version allows 6.
	for i := range 5 {
		if !s.allowed(t, "capped") {
			t.Fatalf("check %d of capped refused: the last swap's limit of 6 is not in force", i+2)
		}
	}
	if s.allowed(t, "capped") {
		t.Error("capped got a 7th call: the limit of 6 is not in force")
	}
}

func TestRequireEncryptionStaysInForceAcrossReloads(t *testing.T) {
	waitOutsideHourEdge()
	keys := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(keys, "identity.txt")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(keys, "plain.yaml")
	if err := os.WriteFile(plain, []byte("require_encryption: true\n"+reloadConfig(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	served := t.TempDir()
	path := filepath.Join(served, "quota.yaml")
	if _, stderr, code := runBinary(t, nil, "config", "encrypt", "--recipient", id.Recipient().String(), "-o", path, plain); code != 0 {
		t.Fatalf("config encrypt: exit %d: %s", code, stderr)
	}
	t.Setenv("QUOTAGATE_AGE_IDENTITY_FILE", idFile)
	s := startServer(t, path)
	st := s.status(t)

	// mv a plaintext copy without require_encryption over the encrypted file.
	copyPath := filepath.Join(served, ".quota.yaml.new")
	if err := os.WriteFile(copyPath, []byte(reloadConfig(50)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(copyPath, path); err != nil {
		t.Fatal(err)
	}
	st = s.waitReload(t, st)
	if st.Config.Failures != 1 || !strings.Contains(st.Config.LastError, "not encrypted") || !strings.Contains(st.Config.LastError, "require_encryption") {
		t.Fatalf("status after a plaintext copy = %+v; want it refused because require_encryption stays in force", st.Config)
	}
	if !s.allowed(t, "capped") || s.allowed(t, "capped") {
		t.Error("the plaintext copy's limit of 50 is in force; the encrypted config's 1 should be")
	}
}
