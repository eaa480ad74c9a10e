package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
)

// reloadConfig is the configuration the reload tests rewrite: small is the
// tier whose limit changes; the load subjects are on load, whose limit
// never changes and binds partway through the run.
func reloadConfig(smallPerHour int) string {
	return fmt.Sprintf(`quota_manager:
  tiers:
    small: {api_calls_per_hour: %d, priority: low}
    load: {api_calls_per_hour: %d, priority: medium}
  default_tier: load
  users:
    capped: {tier: small}
identity:
  sources: [header]
  header: {name: x-user-id, trusted: true}
`, smallPerHour, loadPerHour)
}

// brokenConfig fails validation with one exact field error.
const brokenConfig = `quota_manager:
  tiers:
    small: {api_calls_per_hour: 50, priority: urgent}
    load: {api_calls_per_hour: 300, priority: medium}
  default_tier: load
  users:
    capped: {tier: small}
identity:
  sources: [header]
  header: {name: x-user-id, trusted: true}
`

const (
	loadPerHour  = 150
	loadSubjects = 12
	loadWorkers  = 8
	// minLoadChecks is how many Checks the load sends at least.
	minLoadChecks = 3000
)

// writeOver replaces path with data the way editors and config management
// do: a new file in the same directory, renamed over the old one.
func writeOver(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serveStatus is the part of /status the tests read.
type serveStatus struct {
	Config struct {
		Generation uint64 `json:"generation"`
		Failures   uint64 `json:"failures"`
		LastError  string `json:"last_error"`
	} `json:"config"`
}

func (s *server) status(t *testing.T) serveStatus {
	t.Helper()
	resp, err := http.Get("http://" + s.httpAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st serveStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitReload waits until /status shows a reload after prev (applied or
// refused) and returns the new status.
func (s *server) waitReload(t *testing.T, prev serveStatus) serveStatus {
	t.Helper()
	var st serveStatus
	waitFor(t, 10*time.Second, func() bool {
		st = s.status(t)
		return st.Config.Generation+st.Config.Failures > prev.Config.Generation+prev.Config.Failures
	})
	return st
}

// allowed sends one Check for subject and reports whether it was allowed.
func (s *server) allowed(t *testing.T, subject string) bool {
	t.Helper()
	return s.check(t, envoyRequest{method: "GET", path: "/v1/items", headers: map[string]string{"x-user-id": subject}}).GetOkResponse() != nil
}

// loadCounts are one subject's outcomes as the client saw them.
type loadCounts struct{ sent, admitted, denied, failed atomic.Int64 }

// runLoad sends Checks for the load subjects from loadWorkers goroutines
// until stop is closed.
func runLoad(s *server, counts []*loadCounts, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := counts[i%loadSubjects]
				req := envoyRequest{method: "GET", path: "/v1/items",
					headers: map[string]string{"x-user-id": fmt.Sprintf("load-%d", i%loadSubjects)}}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := s.client.Check(ctx, req.checkRequest())
				cancel()
				c.sent.Add(1)
				switch {
				case err != nil:
					c.failed.Add(1)
				case resp.GetOkResponse() != nil:
					c.admitted.Add(1)
				default:
					c.denied.Add(1)
				}
			}
		})
	}
	return &wg
}

func TestReloadUnderLoad(t *testing.T) {
	waitOutsideHourEdge()
	dir := t.TempDir()
	path := filepath.Join(dir, "quota.yaml")
	if err := os.WriteFile(path, []byte(reloadConfig(3)), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	s := startServer(t, path, "--admin-addr", adminAddr)
	for i := range 3 {
		if !s.allowed(t, "capped") {
			t.Fatalf("capped call %d refused under a limit of 3", i+1)
		}
	}
	if s.allowed(t, "capped") {
		t.Fatal("4th capped call allowed under a limit of 3")
	}
	cappedAdmitted := int64(3)

	counts := make([]*loadCounts, loadSubjects)
	for i := range counts {
		counts[i] = &loadCounts{}
	}
	stop := make(chan struct{})
	start := time.Now()
	wg := runLoad(s, counts, stop)
	time.Sleep(500 * time.Millisecond)

	st := s.status(t)
	writeOver(t, path, reloadConfig(10))
	st = s.waitReload(t, st)
	if st.Config.LastError != "" {
		t.Fatalf("raising the limit was refused: %s", st.Config.LastError)
	}
	if !s.allowed(t, "capped") {
		t.Error("a raised limit (3 -> 10) did not let the refused subject through at once")
	} else {
		cappedAdmitted++
	}
	time.Sleep(500 * time.Millisecond)

	writeOver(t, path, reloadConfig(2))
	st = s.waitReload(t, st)
	if s.allowed(t, "capped") {
		cappedAdmitted++
		t.Error("a lowered limit (10 -> 2) did not refuse at once")
	}
	time.Sleep(500 * time.Millisecond)

	writeOver(t, path, brokenConfig)
	st = s.waitReload(t, st)
	const fieldErr = `quota_manager.tiers.small.priority: unknown priority "urgent"`
	if !strings.Contains(st.Config.LastError, fieldErr) || st.Config.Failures != 1 {
		t.Errorf("/status after a broken config: failures %d, last_error %q; want 1 and the field error %q",
			st.Config.Failures, st.Config.LastError, fieldErr)
	}
	if s.allowed(t, "capped") {
		cappedAdmitted++
		t.Error("a broken config changed decisions: capped was allowed under the previous limit of 2")
	}
	if body := httpGet(t, "http://"+s.httpAddr+"/readyz"); !strings.Contains(body, fieldErr) {
		t.Errorf("/readyz does not report the refused reload:\n%s", body)
	}
	if body := httpGet(t, "http://"+adminAddr+"/v1/config"); !strings.Contains(body, strconv.Quote(fieldErr)[1:len(strconv.Quote(fieldErr))-1]) ||
		!strings.Contains(body, `"failures": 1`) {
		t.Errorf("the admin API's /v1/config does not report the refused reload:\n%s", body)
	}
	refused := regexp.MustCompile(`(?m)^quota_config_reloads_total\{[^}]*outcome="refused"[^}]*\} 1$`)
	if body := httpGet(t, "http://"+s.httpAddr+"/metrics"); !refused.MatchString(body) {
		t.Errorf("/metrics does not count the refused reload in quota_config_reloads_total{outcome=\"refused\"}")
	}
	time.Sleep(500 * time.Millisecond)

	writeOver(t, path, reloadConfig(2))
	st = s.waitReload(t, st)
	if st.Config.LastError != "" {
		t.Errorf("a valid config after a broken one was refused: %s", st.Config.LastError)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	gen := st.Config.Generation
	st = s.waitReload(t, st)
	if st.Config.Generation != gen+1 {
		t.Errorf("SIGHUP: generation %d, want %d", st.Config.Generation, gen+1)
	}
	// Keep the load on until enough Checks went through to matter, on a
	// slow machine too.
	waitFor(t, 20*time.Second, func() bool {
		var n int64
		for _, c := range counts {
			n += c.sent.Load()
		}
		return n >= minLoadChecks
	})
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	var sent, admitted, denied int64
	for i, c := range counts {
		subject := fmt.Sprintf("load-%d", i)
		if c.failed.Load() > 0 {
			t.Errorf("%s: %d Checks failed", subject, c.failed.Load())
		}
		if c.admitted.Load()+c.denied.Load() != c.sent.Load() {
			t.Errorf("%s: admitted %d + denied %d != sent %d", subject, c.admitted.Load(), c.denied.Load(), c.sent.Load())
		}
		if want := min(c.sent.Load(), loadPerHour); c.admitted.Load() != want {
			t.Errorf("%s: admitted %d of %d sent, want exactly %d (the limit is %d)", subject, c.admitted.Load(), c.sent.Load(), want, loadPerHour)
		}
		if used := hourUsed(t, adminAddr, subject); used != c.admitted.Load() {
			t.Errorf("%s: the server counted %d calls, the client saw %d admitted", subject, used, c.admitted.Load())
		}
		sent, admitted, denied = sent+c.sent.Load(), admitted+c.admitted.Load(), denied+c.denied.Load()
	}
	if used := hourUsed(t, adminAddr, "capped"); used != cappedAdmitted {
		t.Errorf("capped: the server counted %d calls, the client saw %d admitted", used, cappedAdmitted)
	}
	t.Logf("%d Checks in %v (%.0f/s) across 5 reloads: %d admitted, %d denied", sent, elapsed.Round(time.Millisecond),
		float64(sent)/elapsed.Seconds(), admitted, denied)

}

// hourUsed reads the usage of subject's hour limit from the admin API.
func hourUsed(t *testing.T, adminAddr, subject string) int64 {
	t.Helper()
	var st struct {
		Limits []struct {
			Name string `json:"name"`
			Used int64  `json:"used"`
		} `json:"limits"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+adminAddr+"/v1/subjects/"+subject)), &st); err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Limits {
		if l.Name == "hour" {
			return l.Used
		}
	}
	t.Fatalf("%s has no hour limit: %+v", subject, st)
	return 0
}

// httpGet returns the body of a GET that must answer 200.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

func TestEncryptedConfigServesAndReloads(t *testing.T) {
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
	// The plaintext lives apart from the served directory, which must
	// only ever hold the encrypted file.
	plain := filepath.Join(keys, "plain.yaml")
	served := t.TempDir()
	path := filepath.Join(served, "quota.yaml.age")
	encrypt := func(smallPerHour int, out string) {
		t.Helper()
		if err := os.WriteFile(plain, []byte(reloadConfig(smallPerHour)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := runBinary(t, nil, "config", "encrypt", "--recipient", id.Recipient().String(), "-o", out, plain); code != 0 {
			t.Fatalf("config encrypt: exit %d: %s", code, stderr)
		}
	}
	encrypt(1, path)
	t.Setenv("QUOTAGATE_AGE_IDENTITY_FILE", idFile)
	s := startServer(t, path)
	if !s.allowed(t, "capped") || s.allowed(t, "capped") {
		t.Fatal("the encrypted config's limit of 1 is not enforced")
	}
	st := s.status(t)
	next := filepath.Join(keys, "next.age")
	encrypt(5, next)
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	st = s.waitReload(t, st)
	if st.Config.LastError != "" {
		t.Fatalf("reloading the encrypted config was refused: %s", st.Config.LastError)
	}
	if !s.allowed(t, "capped") {
		t.Error("the reloaded encrypted config's limit of 5 did not let capped through")
	}
	entries, err := os.ReadDir(served)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(served, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() != "quota.yaml.age" || strings.Contains(string(data), "quota_manager") {
			t.Errorf("the served directory holds %s, which is not the encrypted config (or is plaintext)", e.Name())
		}
	}
}

func TestSIGHUPWithoutConfigFile(t *testing.T) {
	s := startServer(t, "")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(s.stderr.String(), "there is no file to reload") })
	if !s.allowed(t, "demo-enterprise") {
		t.Error("the server stopped deciding after a SIGHUP without a config file")
	}
}
