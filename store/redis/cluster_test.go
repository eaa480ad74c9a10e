package redis

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/redis/redistest"
	"github.com/quotagate/quotagate/store/storetest"
)

// target is where a test's stores connect: one server or a cluster.
type target interface {
	open(t testing.TB, opts Options) *Store
}

// shared is the package's one Redis Cluster (3 primaries, 3 replicas),
// started by the first test that needs it and stopped by TestMain. Tests
// that share it use their own key prefix; the failover test runs last in
// its file and waits for the cluster to be whole again.
var shared struct {
	once sync.Once
	c    *redistest.Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.Close()
	}
	os.Exit(code)
}

// prefixes numbers the key prefixes of tests on the shared cluster, so a
// test run again (-count) starts from nothing.
var prefixes atomic.Int64

// fresh returns a key prefix no other test run in this process used.
func fresh(name string) string { return fmt.Sprintf("%s-%d", name, prefixes.Add(1)) }

// cluster is the shared Redis Cluster as a target.
type cluster struct{ *redistest.Cluster }

// sharedCluster starts the shared cluster on first use.
func sharedCluster(t testing.TB) cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = redistest.NewCluster(3, 1) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return cluster{shared.c}
}

func (c cluster) open(t testing.TB, opts Options) *Store {
	opts.ClusterAddrs = c.Addrs()[:1] // the client learns the others
	return openStore(t, opts)
}

func TestClusterConformance(t *testing.T) {
	c := sharedCluster(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) engine.Store {
		// The suite checks what is stored, not deadlines: a loaded CI machine
		// under -race must not fail it on the 50ms default.
		return c.open(t, Options{Prefix: fresh(fmt.Sprintf("cconf%d", n.Add(1))), Timeout: 5 * time.Second})
	})
}

// TestClusterExactAcrossEngines is TestExactAcrossEngines on the cluster,
// with 3 replicas: every Check's script must touch one slot (a team
// member's keys share the team's tag), or it fails with CROSSSLOT.
func TestClusterExactAcrossEngines(t *testing.T) {
	c := sharedCluster(t)
	tests := exactCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 6 {
				engines, _ := replicas(t, c, Options{Prefix: fresh(fmt.Sprintf("cexact%d", round)), Timeout: 5 * time.Second}, tc.cfg, 3)
				got := hammer(t, engines, func(i int) engine.Request { return tc.req(round, i) })
				if got != tc.want {
					t.Fatalf("round %d: admitted %d of 64, want exactly %d", round, got, tc.want)
				}
			}
		})
	}
}

// TestClusterSpreadsSubjects checks that subjects land on every primary
// and that one pipeline's scripts, split per node by the client, all come
// back; and that a SCRIPT FLUSH on every node is survived on every node.
func TestClusterSpreadsSubjects(t *testing.T) {
	c := sharedCluster(t)
	st := c.open(t, Options{Prefix: fresh("spread"), Timeout: 5 * time.Second})
	e := newEngines(t, st, testConfig(3, 0, 0, 0), 1)[0]
	ctx := context.Background()
	const subjects = 48
	nodes := map[string]bool{}
	for i := range subjects {
		slot, err := c.Slot(fmt.Sprintf("spread:{s%d}:o:s%d", i, i))
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Primary(slot)
		if err != nil {
			t.Fatal(err)
		}
		nodes[p.Addr] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("%d subjects live on %d primaries, want all 3", subjects, len(nodes))
	}
	charge := func(round int) {
		var wg sync.WaitGroup
		for i := range subjects {
			wg.Go(func() {
				d, err := e.Charge(ctx, engine.Request{Subject: fmt.Sprintf("s%d", i)})
				if err != nil || !d.Allowed || d.Binding.Used != int64(round) {
					t.Errorf("round %d: s%d: allowed %v used %d, %v; want allowed, used %d", round, i, d.Allowed, d.Binding.Used, err, round)
				}
			})
		}
		wg.Wait()
	}
	charge(1)
	ps, err := c.Primaries()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, err := p.Do("SCRIPT", "FLUSH"); err != nil {
			t.Fatal(err)
		}
	}
	charge(2)
	if s := st.Stats(); s.Errors != 0 || s.Batched <= s.Calls {
		t.Fatalf("stats %+v: want no errors and batches of more than one script", s)
	}
}

// TestClusterProfilesAndLeases runs the profile epoch poll and leased mode
// on the cluster: the epoch key and the subjects' hashes live on
// different nodes.
func TestClusterProfilesAndLeases(t *testing.T) {
	c := sharedCluster(t)
	start := time.Now().Truncate(time.Hour).Add(time.Minute)
	now := start
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"free": {Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 1}}},
			"pro":  {Limits: []engine.LimitConfig{{Name: "hour", Period: hour, Max: 100}}},
		},
		DefaultTier: "free",
	}, Options: engine.Options{
		Now: func() time.Time { return now },
	}}
	const ttl = 5 * time.Second
	engines, _ := replicas(t, c, Options{Prefix: fresh("cprof"), ProfileTTL: ttl, Timeout: time.Second, Lease: 4}, cfg, 2)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	if d, err := b.Charge(ctx, engine.Request{Subject: "pat"}); err != nil || !d.Allowed {
		t.Fatalf("first call = %v, %v; want allowed", d.Allowed, err)
	}
	if err := a.SetProfile(ctx, "pat", engine.Profile{Tier: "pro"}); err != nil {
		t.Fatal(err)
	}
	now = start.Add(ttl + time.Second)
	var admitted int
	for range 50 {
		d, err := b.Charge(ctx, engine.Request{Subject: "pat"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			admitted++
		}
		if d.Tier != "pro" {
			t.Fatalf("B decided by tier %q after the TTL, want pro", d.Tier)
		}
	}
	if admitted != 50 {
		t.Fatalf("B admitted %d of 50 in tier pro, want 50", admitted)
	}
	// Leased: A and B share 100 of pro; 1 + 50 used, and blocks of 4.
	var more int
	for i := range 80 {
		if d, err := engines[i%2].Charge(ctx, engine.Request{Subject: "pat"}); err == nil && d.Allowed {
			more++
		}
	}
	if more > 100-51 || more < 100-51-3 {
		t.Fatalf("after 51 calls, %d more admitted of pro's 100; want 46 to 49 (blocks of 4 held unused)", more)
	}
}
