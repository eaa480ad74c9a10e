package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test's load: these subjects draw translations from their
// balances. tess has 50 tokens and runs dry under load, so that "no
// balance is negative" is tested where it could fail.
var crashSubjects = []string{"crash-0", "crash-1", "crash-2", "crash-3", "crash-4", "crash-5", "tess"}

const (
	crashFlush      = 100 * time.Millisecond // store.flush_interval in testdata/crash.yaml
	crashWorkers    = 4
	crashLoadBefore = 1200 * time.Millisecond
)

// ack is one charge the server acknowledged to the client.
type ack struct {
	at   time.Time
	cost int64
}

// crashLoad is what the load saw, per subject.
type crashLoad struct {
	mu       sync.Mutex
	acks     map[string][]ack
	inflight map[string]int64 // the cost of Checks sent but not answered when the server died
	start    map[string]int64 // the balance before the load
}

// TestCrashSafety runs load against the binary with a data directory,
// kill -9s it mid-run, restarts it on the same directory and checks the
// state and the ledger, in both durability modes.
func TestCrashSafety(t *testing.T) {
	tests := []struct {
		name       string
		durability string
		exact      bool
	}{
		{name: "batch", durability: "batch"},
		{name: "sync", durability: "sync", exact: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ledgerPath := filepath.Join(dir, "ledger.db")
			args := func(adminAddr string) []string {
				return []string{"--data-dir", dir, "--durability", tt.durability, "--admin-addr", adminAddr, "--log-level", "info"}
			}
			adminAddr := freeAddr(t)
			s := startServer(t, "testdata/crash.yaml", args(adminAddr)...)
			waitOutsideHourEdge()
			fiona := envoyRequest{path: "/v1/things", method: "GET", headers: map[string]string{"x-user-id": "fiona"}}
			for i := 1; i <= 10; i++ {
				if resp := s.check(t, fiona); resp.GetOkResponse() == nil {
					t.Fatalf("fiona call %d refused: %v", i, resp)
				}
			}
			load := &crashLoad{acks: map[string][]ack{}, inflight: map[string]int64{}, start: map[string]int64{}}
			for _, sub := range crashSubjects {
				load.start[sub] = subjectBalance(t, adminAddr, sub)
			}
			killed := runLoadAndKill(t, s, load)

			if out, errOut, code := runBinary(t, nil, "ledger", "verify", "--ledger", ledgerPath); code != 0 || !strings.Contains(out, "chain intact") {
				t.Fatalf("ledger verify after kill -9: exit %d\n%s%s", code, out, errOut)
			}
			adminAddr = freeAddr(t)
			s2 := startServer(t, "testdata/crash.yaml", args(adminAddr)...)
			now := map[string]int64{}
			for _, sub := range crashSubjects {
				now[sub] = subjectBalance(t, adminAddr, sub)
			}
			resp := s2.check(t, fiona)
			if resp.GetDeniedResponse().GetStatus().GetCode() != 429 {
				t.Errorf("fiona's 11th call after the restart = %v, want 429 (the hour's usage must survive)", resp)
			}
			if err := s2.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Fatalf("restarted server exit: %v", err)
			}
			if out, errOut, code := runBinary(t, nil, "ledger", "verify", "--ledger", ledgerPath); code != 0 || !strings.Contains(out, "chain intact") {
				t.Fatalf("ledger verify after the restart: exit %d\n%s%s", code, out, errOut)
			}
			checkCrashAccounts(t, load, now, ledgerPath, killed, tt.exact)
		})
	}
}

// runLoadAndKill sends translations from several workers, kills the
// server with SIGKILL while they run, and returns when it was killed.
func runLoadAndKill(t *testing.T, s *server, load *crashLoad) time.Time {
	t.Helper()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < crashWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sub := crashSubjects[(w+i*crashWorkers)%len(crashSubjects)]
				n := 1 + (w+i)%5
				req := envoyRequest{path: "/v1/translate", action: "translate", body: words(n), headers: map[string]string{"x-user-id": sub}}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := s.client.Check(ctx, req.checkRequest())
				cancel()
				load.mu.Lock()
				switch {
				case err != nil:
					load.inflight[sub] += int64(1 + n)
				case resp.GetOkResponse() != nil:
					cost, _ := strconv.ParseInt(headers(resp)["x-quota-cost"], 10, 64)
					load.acks[sub] = append(load.acks[sub], ack{at: time.Now(), cost: cost})
				}
				load.mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		}(w)
	}
	time.Sleep(crashLoadBefore)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-s.exited
	close(stop)
	wg.Wait()
	return killed
}

// checkCrashAccounts checks, per subject, that no balance is negative and
// that what the balance lost equals what the ledger charged: exactly in
// sync mode, within the charges acknowledged in the last flush interval
// before the kill otherwise. The gaps are logged either way.
func checkCrashAccounts(t *testing.T, load *crashLoad, now map[string]int64, ledgerPath string, killed time.Time, exact bool) {
	t.Helper()
	total := 0
	for _, sub := range crashSubjects {
		acked, recent := int64(0), int64(0)
		for _, a := range load.acks[sub] {
			acked += a.cost
			if !a.at.Before(killed.Add(-crashFlush - 50*time.Millisecond)) {
				recent += a.cost
			}
		}
		total += len(load.acks[sub])
		drop := load.start[sub] - now[sub]
		ledgered := ledgerTokens(t, ledgerPath, sub)
		gap := drop - ledgered
		t.Logf("%s: acknowledged %d tokens (%d in the last flush interval, %d in flight), balance dropped %d, ledger charged %d, gap %d",
			sub, acked, recent, load.inflight[sub], drop, ledgered, gap)
		if now[sub] < 0 {
			t.Errorf("%s: balance %d after the restart is negative", sub, now[sub])
		}
		if lost := acked - drop; !exact && lost > recent {
			t.Errorf("%s: the restart handed back %d acknowledged tokens, more than the %d of the last flush interval", sub, lost, recent)
		}
		if drop > acked+load.inflight[sub] {
			t.Errorf("%s: over-charged: the balance dropped %d, more than the %d acknowledged and %d in flight", sub, drop, acked, load.inflight[sub])
		}
		switch {
		case exact && gap != 0:
			// Measured so far: gap > 0 and at most the in-flight cost, i.e.
			// the state of a Check that was never answered was committed
			// without its ledger record.
			t.Errorf("%s: sync mode: balance dropped %d but the ledger charged %d: gap %d tokens "+
				"(acknowledged %d, in flight and unanswered at the kill %d)", sub, drop, ledgered, gap, acked, load.inflight[sub])
		case exact && ledgered < acked:
			t.Errorf("%s: sync mode: the ledger charged %d, less than the %d acknowledged", sub, ledgered, acked)
		case !exact && abs(gap) > recent+load.inflight[sub]:
			t.Errorf("%s: balance dropped %d, ledger charged %d: gap %d exceeds the %d tokens of the last flush interval and %d in flight",
				sub, drop, ledgered, gap, recent, load.inflight[sub])
		}
	}
	if total < 50 {
		t.Errorf("only %d Checks were acknowledged before the kill; the load is too light to prove anything", total)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// subjectBalance reads a subject's token balance from the admin API
// (loopback, so no token is needed).
func subjectBalance(t *testing.T, adminAddr, subject string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/v1/subjects/" + subject)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Balance struct {
			Balance    int64 `json:"balance"`
			HasBalance bool  `json:"has_balance"`
		} `json:"balance"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || !body.Balance.HasBalance {
		t.Fatalf("GET /v1/subjects/%s: %d %v %+v", subject, resp.StatusCode, err, body)
	}
	return body.Balance.Balance
}

// ledgerTokens sums the tokens the ledger charged subject, through
// quotagate usage.
func ledgerTokens(t *testing.T, ledgerPath, subject string) int64 {
	t.Helper()
	out, errOut, code := runBinary(t, nil, "usage", "--ledger", ledgerPath, "--subject", subject, "--by", "month", "--format", "json")
	if code != 0 {
		t.Fatalf("quotagate usage --subject %s: exit %d\n%s", subject, code, errOut)
	}
	var rows []struct {
		Tokens int64 `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("quotagate usage output %q: %v", out, err)
	}
	var sum int64
	for _, r := range rows {
		sum += r.Tokens
	}
	return sum
}
