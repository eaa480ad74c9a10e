package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// subjectView is the part of the admin API's subject the tests read.
type subjectView struct {
	Tier    string `json:"tier"`
	Balance struct {
		Balance    int64 `json:"balance"`
		HasBalance bool  `json:"has_balance"`
	} `json:"balance"`
}

func getSubject(t *testing.T, adminAddr, subject string) subjectView {
	t.Helper()
	var v subjectView
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+adminAddr+"/v1/subjects/"+subject)), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// patchTier changes subject's tier through the admin API (no tokens are
// configured, so the loopback client may).
func patchTier(t *testing.T, adminAddr, subject, tier string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, "http://"+adminAddr+"/v1/subjects/"+subject+"/profile",
		strings.NewReader(`{"tier":"`+tier+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH tier: %s: %s", resp.Status, body)
	}
}

func translate(subject string) envoyRequest {
	return envoyRequest{path: "/v1/translate", action: "translate", body: words(50),
		headers: map[string]string{"x-user-id": subject}}
}

func TestDurableRestart(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "batch"},
		{name: "sync", args: []string{"--durability", "sync"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			waitOutsideHourEdge()
			dir := filepath.Join(t.TempDir(), "data") // created by serve
			adminAddr := freeAddr(t)
			args := append([]string{"--data-dir", dir, "--admin-addr", adminAddr}, tt.args...)
			s := startServer(t, "", args...)
			for i := range 10 {
				if resp := s.check(t, translate("demo-free")); resp.GetOkResponse() == nil {
					t.Fatalf("call %d refused: %v", i+1, resp.GetDeniedResponse())
				}
			}
			before := getSubject(t, adminAddr, "demo-free")
			if !before.Balance.HasBalance || before.Balance.Balance >= 1000 {
				t.Fatalf("balance after 10 translations = %+v, want below the grant of 1000", before.Balance)
			}
			if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}

			s = startServer(t, "", args...)
			if resp := s.check(t, translate("demo-free")); resp.GetDeniedResponse() == nil {
				t.Fatal("the 11th freemium call in the hour was allowed after a restart on the same --data-dir")
			}
			if after := getSubject(t, adminAddr, "demo-free"); after.Balance != before.Balance {
				t.Errorf("balance after restart = %+v, want %+v", after.Balance, before.Balance)
			}
			patchTier(t, adminAddr, "demo-free", "standard")
			if resp := s.check(t, translate("demo-free")); resp.GetOkResponse() == nil {
				t.Errorf("after the admin API moved demo-free to standard, the next Check was refused: %v", resp.GetDeniedResponse())
			}
			if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Fatalf("SIGTERM: %v", err)
			}
			checkLedgerCLI(t, dir)
		})
	}
}

// checkLedgerCLI runs ledger verify and usage against the data directory's
// ledger: 11 charges, 1 rejection and 1 admin change.
func checkLedgerCLI(t *testing.T, dir string) {
	t.Helper()
	out, stderr, code := runBinary(t, nil, "ledger", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "13 records") || !strings.Contains(out, "intact") {
		t.Errorf("ledger verify: exit %d, %q %q; want 13 records, chain intact", code, out, stderr)
	}
	out, stderr, code = runBinary(t, nil, "usage", "--data-dir", dir, "--subject", "demo-free", "--by", "day", "--format", "json")
	if code != 0 {
		t.Fatalf("usage: exit %d: %s", code, stderr)
	}
	var rows []struct{ Calls, Rejections, Tokens int64 }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("usage --format json: %v\n%s", err, out)
	}
	if len(rows) != 1 || rows[0].Calls != 11 || rows[0].Rejections != 1 || rows[0].Tokens <= 0 {
		t.Errorf("usage = %+v, want one day with 11 calls, 1 rejection and the tokens charged", rows)
	}
}

func TestDataDirNotWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runBinary(t, nil, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", filepath.Join(file, "data"))
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.Contains(last, "data directory") || !strings.Contains(last, "--data-dir") {
		t.Errorf("exit %d, last line %q; want exit 1 and one line naming the data directory and --data-dir", code, last)
	}
}
