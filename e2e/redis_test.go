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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/store/redis/redistest"
)

// redisProc is a redis-server started by a test on a loopback port, with a
// throwaway directory and no persistence (see redistest).
type redisProc struct {
	t *testing.T
	*redistest.Server
	addr string
}

// startRedis starts redis-server on a free loopback port; the test's
// cleanup stops it.
func startRedis(t *testing.T) *redisProc {
	t.Helper()
	s := redistest.StartServer(t)
	return &redisProc{t: t, Server: s, addr: s.Addr}
}

// start restarts redis-server on r.addr and waits until it answers PING.
func (r *redisProc) start() {
	r.t.Helper()
	if err := r.Start(); err != nil {
		r.t.Fatal(err)
	}
}

// kill stops redis-server at once, as a crash would.
func (r *redisProc) kill() { r.Kill() }

// Exactness rounds, calls allowed per hour, and the balance and price of
// the balance rounds.
const (
	redisRounds  = 10
	redisLimit   = 25
	redisBalance = 100
	// redisTeamTokens is each round's team grant, shared by two members.
	redisTeamTokens = 150
	redisCost       = 7
	// redisTimeout leaves room for 64 concurrent clients on a loaded CI
	// machine; a timed-out charge would fail the exactness rounds.
	redisTimeout  = 250 * time.Millisecond
	redisReplicas = 3
)

// writeRedisConfig writes a configuration for replicas sharing the Redis at
// addr: per round, a user "w<round>" of tier "exact" (redisLimit calls per
// hour), a user "b<round>" of tier "balance" (redisBalance tokens,
// redisCost per translate), and a team "crew<round>" (members
// "t<round>a" and "t<round>b" of tier exact, sharing redisTeamTokens
// tokens), plus "shut" (fail closed) and "open" (fail open).
func writeRedisConfig(t *testing.T, addr string) string {
	t.Helper()
	return writeRedisTargetConfig(t, fmt.Sprintf("addr: %q", addr))
}

// writeRedisTargetConfig is writeRedisConfig with target saying where
// Redis is, in YAML ("addr: ..." or "cluster: {addrs: [...]}").
func writeRedisTargetConfig(t *testing.T, target string) string {
	t.Helper()
	var users, teams strings.Builder
	for i := range redisRounds {
		fmt.Fprintf(&users, "    w%d: {tier: exact}\n    b%d: {tier: balance}\n    t%da: {tier: balance}\n    t%db: {tier: balance}\n", i, i, i, i)
		fmt.Fprintf(&teams, "    crew%d: {members: [t%da, t%db], tokens: {grant: %d, every: month}}\n", i, i, i, redisTeamTokens)
	}
	cfg := fmt.Sprintf(`quota_manager:
  tiers:
    exact:
      api_calls_per_hour: %d
      failure_mode: closed
    balance:
      api_calls_per_hour: 100000
      tokens: {grant: %d, every: month}
      failure_mode: closed
    shut:
      api_calls_per_hour: 100000
      failure_mode: closed
    open:
      api_calls_per_hour: 100000
      failure_mode: open
  default_tier: exact
  actions:
    translate: {tokens_per_call: %d}
  users:
%s    shut: {tier: shut}
    open: {tier: open}
  teams:
%sidentity:
  sources: [header]
  header: {name: x-user-id, trusted: true}
store:
  kind: redis
  redis: {%s, timeout: %s}
`, redisLimit, redisBalance, redisCost, users.String(), teams.String(), target, redisTimeout)
	path := filepath.Join(t.TempDir(), "redis.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// admitted sends 64 concurrent requests for subject, spread over the
// replicas, and returns how many were allowed.
func admitted(t *testing.T, replicas []*server, subject, action string) int64 {
	t.Helper()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			req := envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": subject}, action: action}
			if resp := replicas[i%len(replicas)].check(t, req); resp.GetOkResponse() != nil {
				if h := headers(resp); h["x-quota-failure-mode"] != "" {
					t.Errorf("%s: admitted by the failure mode, not by Redis: %v", subject, h)
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

func TestRedisReplicas(t *testing.T) {
	rp := startRedis(t)
	path := writeRedisConfig(t, rp.addr)
	replicas := make([]*server, redisReplicas)
	adminAddr := freeAddr(t) // replica 0's management API
	for i := range replicas {
		var args []string
		if i == 0 {
			// Admin changes are recorded in a ledger, or refused.
			args = []string{"--admin-addr", adminAddr, "--data-dir", t.TempDir()}
		}
		replicas[i] = startServer(t, path, args...)
	}
	waitOutsideHourEdge()
	exactRounds(t, replicas, 0, redisRounds)
	t.Run("a tier change on one replica reaches the others", func(t *testing.T) {
		tierChangeReachesReplicas(t, replicas, adminAddr)
	})
	t.Run("failure modes and recovery", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range replicas {
			wg.Go(func() { keepChecking(t, s, i, stop) })
		}
		time.Sleep(100 * time.Millisecond) // mid-run: clients are in flight
		rp.kill()
		for _, s := range replicas {
			checkFailureModes(t, s)
		}
		checkHealth(t, replicas[0], false)
		rp.start()
		for i, s := range replicas {
			waitRecovered(t, s, i)
		}
		checkHealth(t, replicas[0], true)
		close(stop)
		wg.Wait()
	})
}

// exactRounds checks, over rounds from to to-1 (each of 64 concurrent
// requests spread over replicas), that a window limit, a balance and a
// team's shared balance each admit exactly what they allow.
func exactRounds(t *testing.T, replicas []*server, from, to int) {
	t.Run("exact limit", func(t *testing.T) {
		for round := from; round < to; round++ {
			if got := admitted(t, replicas, fmt.Sprintf("w%d", round), ""); got != redisLimit {
				t.Fatalf("round %d: %d of 64 admitted across %d replicas, want exactly %d", round, got, redisReplicas, redisLimit)
			}
		}
	})
	t.Run("exact balance", func(t *testing.T) {
		for round := from; round < to; round++ {
			if got := admitted(t, replicas, fmt.Sprintf("b%d", round), "translate"); got != redisBalance/redisCost {
				t.Fatalf("round %d: %d of 64 admitted, want floor(%d/%d) = %d", round, got, redisBalance, redisCost, redisBalance/redisCost)
			}
		}
	})
	t.Run("exact team balance", func(t *testing.T) {
		for round := from; round < to; round++ {
			var ok atomic.Int64
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Go(func() {
					subject := fmt.Sprintf("t%d%c", round, "ab"[i%2])
					req := envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": subject}, action: "translate"}
					if resp := replicas[i%len(replicas)].check(t, req); resp.GetOkResponse() != nil {
						if h := headers(resp); h["x-quota-failure-mode"] != "" {
							t.Errorf("%s: admitted by the failure mode, not by Redis: %v", subject, h)
						}
						ok.Add(1)
					}
				})
			}
			wg.Wait()
			if got, want := ok.Load(), int64(redisTeamTokens/redisCost); got != want {
				t.Fatalf("round %d: %d of 64 team requests admitted, want floor(%d/%d) = %d", round, got, redisTeamTokens, redisCost, want)
			}
		}
	})
}

// keepChecking sends requests of the fail-open tier to s until stop is
// closed: whether Redis is up, down or restarting, every one must be
// allowed (by Redis or by the failure mode) within one Redis deadline.
func keepChecking(t *testing.T, s *server, i int, stop <-chan struct{}) {
	const slack = 500 * time.Millisecond
	req := envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": "open"}}
	for {
		select {
		case <-stop:
			return
		default:
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := s.client.Check(ctx, req.checkRequest())
		cancel()
		if err != nil {
			t.Errorf("replica %d: Check: %v", i, err)
			return
		}
		if took := time.Since(start); took > redisTimeout+slack {
			t.Errorf("replica %d: a fail-open check took %s, want within %s", i, took, redisTimeout+slack)
		}
		if resp.GetOkResponse() == nil {
			t.Errorf("replica %d: a fail-open check was refused: %v", i, resp)
			return
		}
	}
}

// checkFailureModes asserts that with Redis down, a fail-closed tier gets
// 503 and a fail-open tier is allowed with x-quota-failure-mode: open,
// each within one Redis deadline (plus the gRPC round trip).
func checkFailureModes(t *testing.T, s *server) {
	t.Helper()
	const slack = 500 * time.Millisecond
	for _, tc := range []struct {
		subject string
		allowed bool
		status  int32
	}{
		{subject: "shut", status: 503},
		{subject: "open", allowed: true},
	} {
		start := time.Now()
		resp := s.check(t, envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": tc.subject}})
		took := time.Since(start)
		if took > redisTimeout+slack {
			t.Errorf("%s: answered after %s with Redis down, want within %s", tc.subject, took, redisTimeout+slack)
		}
		h := headers(resp)
		switch {
		case tc.allowed && (resp.GetOkResponse() == nil || h["x-quota-failure-mode"] != "open"):
			t.Errorf("%s with Redis down = %v, want allowed with x-quota-failure-mode: open", tc.subject, resp)
		case !tc.allowed && resp.GetDeniedResponse().GetStatus().GetCode() != 503:
			t.Errorf("%s with Redis down = %v, want 503", tc.subject, resp)
		}
	}
}

// checkHealth asserts that s reports the shared store healthy or
// degraded on /status, /readyz (still ready: the failure modes decide)
// and the quota_store_up metric.
func checkHealth(t *testing.T, s *server, healthy bool) {
	t.Helper()
	// Each probe pings every primary within the store's timeout. Once
	// Redis is healthy again, one ping on this loaded 2-core test host may
	// still overrun it, so healthy is asked for until it holds, for a few
	// seconds; a store that is down must say so at once.
	deadline := time.Now().Add(5 * time.Second)
	for {
		problems := healthProblems(t, s, healthy)
		if len(problems) == 0 {
			return
		}
		if !healthy || time.Now().After(deadline) {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// healthProblems reports where /status, /readyz and /metrics disagree
// with healthy.
func healthProblems(t *testing.T, s *server, healthy bool) []string {
	t.Helper()
	var problems []string
	var st struct {
		Ready       bool `json:"ready"`
		Degraded    bool `json:"degraded"`
		StoreHealth struct {
			Healthy bool   `json:"healthy"`
			Error   string `json:"error"`
		} `json:"store_health"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+s.httpAddr+"/status")), &st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	if !st.Ready || st.Degraded == healthy || st.StoreHealth.Healthy != healthy || (st.StoreHealth.Error == "") != healthy {
		problems = append(problems, fmt.Sprintf("/status with Redis healthy=%v: %+v; want ready, degraded %v and the store's error when down", healthy, st, !healthy))
	}
	resp, err := http.Get("http://" + s.httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "degraded:") == healthy {
		problems = append(problems, fmt.Sprintf("/readyz with Redis healthy=%v = %d %q; want 200, saying degraded only when down", healthy, resp.StatusCode, body))
	}
	up := "0"
	if healthy {
		up = "1"
	}
	metric := regexp.MustCompile(`(?m)^quota_store_up(\{[^}]*\})? ` + up + `$`)
	if m := httpGet(t, "http://"+s.httpAddr+"/metrics"); !metric.MatchString(m) {
		problems = append(problems, fmt.Sprintf("/metrics lacks quota_store_up %s with Redis healthy=%v", up, healthy))
	}
	return problems
}

// waitRecovered waits until replica i decides through Redis again, with no
// manual step.
func waitRecovered(t *testing.T, s *server, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := s.check(t, envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": "shut"}})
		if resp.GetOkResponse() != nil && headers(resp)["x-quota-failure-mode"] == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d did not recover within 10s of the Redis restart: %v", i, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tierChangeReachesReplicas upgrades a subject through replica 0's admin
// API after the other replicas cached its profile, and checks that each of
// them decides by the new tier within the profile TTL (5 s), as the
// RateLimit-Policy header shows: 25 calls an hour in tier exact, 100 000
// in tier open.
func tierChangeReachesReplicas(t *testing.T, replicas []*server, adminAddr string) {
	t.Helper()
	const subject = "mover"
	policy := func(s *server) string {
		req := envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": subject}}
		return headers(s.check(t, req))["ratelimit-policy"]
	}
	const before, after = `"hour";q=25;w=3600`, `"hour";q=100000;w=3600`
	for i, s := range replicas {
		if got := policy(s); got != before {
			t.Fatalf("replica %d: RateLimit-Policy %q before the change, want %q", i, got, before)
		}
	}
	patchTier(t, adminAddr, subject, "open")
	changed := time.Now()
	if got := policy(replicas[0]); got != after {
		t.Fatalf("replica 0 (where the tier changed): RateLimit-Policy %q, want %q at once", got, after)
	}
	// Polled every 500 ms, so that the old tier's 25 calls last the wait.
	const bound = 5*time.Second + 2*time.Second
	for i, s := range replicas[1:] {
		for policy(s) != after {
			if time.Since(changed) > bound {
				t.Fatalf("replica %d still decides by the old tier %s after the change", i+1, bound)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("replica %d took the new tier %s after the change", i+1, time.Since(changed).Round(100*time.Millisecond))
	}
}
