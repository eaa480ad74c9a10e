package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/store/redis/redistest"
)

// TestRedisCluster runs 3 replicas on a Redis Cluster of 3 primaries and
// 3 replicas (store.redis.cluster): exact limits, balances and team
// balances; then a primary dies, the failure modes answer within the
// deadline and the health endpoint says degraded, its replica is
// promoted, and the replicas are exact again with no restart.
func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	path := writeRedisTargetConfig(t, fmt.Sprintf(`cluster: {addrs: ["%s"]}`, strings.Join(c.Addrs(), `", "`)))
	replicas := make([]*server, redisReplicas)
	for i := range replicas {
		replicas[i] = startServer(t, path)
	}
	waitOutsideHourEdge()
	exactRounds(t, replicas, 0, redisRounds/2)

	t.Run("failover", func(t *testing.T) {
		// The primary of subject "shut" dies (a cluster fails over only
		// while a majority of primaries lives, so one at a time); the
		// other shards go on serving their subjects.
		slot, err := c.Slot("qg:{shut}:o:shut")
		if err != nil {
			t.Fatal(err)
		}
		victim, err := c.Primary(slot)
		if err != nil {
			t.Fatal(err)
		}
		openSlot, err := c.Slot("qg:{open}:o:open")
		if err != nil {
			t.Fatal(err)
		}
		openOnVictim := victim.Serves(c, openSlot)
		start := time.Now()
		victim.Kill()
		for _, s := range replicas {
			if openOnVictim {
				checkFailureModes(t, s)
				continue
			}
			checkClosedFails(t, s)
		}
		checkHealth(t, replicas[0], false)
		if err := c.WaitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		for i, s := range replicas {
			waitRecovered(t, s, i)
		}
		checkHealth(t, replicas[0], true)
		t.Logf("the replicas decide through Redis again %s after the primary died", time.Since(start).Round(100*time.Millisecond))
		exactRounds(t, replicas, redisRounds/2, redisRounds)
	})
}

// checkClosedFails asserts that the fail-closed subject "shut", whose
// shard is down, gets 503 within one Redis deadline.
func checkClosedFails(t *testing.T, s *server) {
	t.Helper()
	start := time.Now()
	resp := s.check(t, envoyRequest{path: "/v1/things", headers: map[string]string{"x-user-id": "shut"}})
	if took := time.Since(start); took > redisTimeout+500*time.Millisecond {
		t.Errorf("shut: answered after %s with its shard down, want within %s", took, redisTimeout+500*time.Millisecond)
	}
	if resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Errorf("shut with its shard down = %v, want 503", resp)
	}
}

// TestRedisSentinel runs 3 replicas on a primary and its replica watched
// by 3 Sentinels (store.redis.sentinel): exact, then the primary dies,
// fail-closed Checks get 503 within the deadline while the Sentinels
// promote the replica, and the replicas are exact again with no restart.
func TestRedisSentinel(t *testing.T) {
	ss := redistest.StartSentinels(t, 1, 3)
	path := writeRedisTargetConfig(t, fmt.Sprintf(`sentinel: {master: %s, addrs: ["%s"]}`, redistest.Master, strings.Join(ss.Addrs(), `", "`)))
	replicas := make([]*server, redisReplicas)
	for i := range replicas {
		replicas[i] = startServer(t, path)
	}
	waitOutsideHourEdge()
	exactRounds(t, replicas, 0, redisRounds/2)

	t.Run("failover", func(t *testing.T) {
		old, err := ss.Primary()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		old.Kill()
		for _, s := range replicas {
			checkFailureModes(t, s)
		}
		checkHealth(t, replicas[0], false)
		if _, err := ss.WaitFailover(old, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		for i, s := range replicas {
			waitRecovered(t, s, i)
		}
		checkHealth(t, replicas[0], true)
		t.Logf("the replicas decide through Redis again %s after the primary died", time.Since(start).Round(100*time.Millisecond))
		exactRounds(t, replicas, redisRounds/2, redisRounds)
	})
}
