package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// NodeTimeout is the cluster-node-timeout of a test cluster: a primary
// that does not answer for this long is failed over to its replica.
const NodeTimeout = 1000 * time.Millisecond

// Cluster is a Redis Cluster on loopback.
type Cluster struct {
	// Nodes are its servers, primaries and replicas as redis-cli chose
	// them at creation; Primary and ReplicaOf tell the current roles.
	Nodes []*Server
}

// NewCluster starts primaries*(1+replicas) cluster nodes and joins them
// into one cluster with redis-cli --cluster create, then waits until every
// node reports the cluster ok. The cluster does not require full
// coverage, so the shards that are up keep serving while one fails over.
// The caller stops it with Close.
func NewCluster(primaries, replicas int) (*Cluster, error) {
	c := &Cluster{}
	for range primaries * (1 + replicas) {
		s, err := NewServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds())),
			"--cluster-require-full-coverage", "no", "--cluster-replica-validity-factor", "0")
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redistest: redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	if replicas > 0 {
		if err := c.WaitReplicated(30 * time.Second); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// StartCluster is NewCluster for a test: a failure ends the test, and the
// test's cleanup stops the cluster.
func StartCluster(tb testing.TB, primaries, replicas int) *Cluster {
	tb.Helper()
	c, err := NewCluster(primaries, replicas)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Addrs returns the addresses of all nodes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Close stops every node. It is idempotent.
func (c *Cluster) Close() {
	for _, s := range c.Nodes {
		s.Close()
	}
}

// WaitHealthy waits until every running node reports cluster_state ok,
// every slot is served by a running node, and the running nodes agree on
// which node serves each slot, for at most timeout. After a Kill this is
// when the failover is done.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = c.healthy(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: the cluster is not healthy after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	var want string
	running := map[string]bool{}
	for _, s := range c.Nodes {
		running[s.Addr] = s.Running()
	}
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		v, err := s.Do("CLUSTER", "INFO")
		if err != nil {
			return err
		}
		info, _ := v.(string)
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Errorf("%s: cluster info %q", s.Addr, info)
		}
		m, err := slotMap(s, running)
		if err != nil {
			return err
		}
		if want == "" {
			want = m
		} else if m != want {
			return fmt.Errorf("%s sees slots %s, another node %s", s.Addr, m, want)
		}
	}
	return nil
}

// slotMap describes which address serves each range of slots, as s sees it.
func slotMap(s *Server, running map[string]bool) (string, error) {
	cl := s.Client()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			return "", errors.New("a slot range without nodes")
		}
		if !running[r.Nodes[0].Addr] {
			return "", fmt.Errorf("slots %d-%d are served by %s, which is down", r.Start, r.End, r.Nodes[0].Addr)
		}
		fmt.Fprintf(&b, "%d-%d=%s ", r.Start, r.End, r.Nodes[0].Addr)
	}
	return b.String(), nil
}

// slots returns the slot ranges as the first running node reports them.
func (c *Cluster) slots() ([]goredis.ClusterSlot, error) {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		cl := s.Client()
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return cl.ClusterSlots(ctx).Result()
	}
	return nil, errors.New("redistest: no node is running")
}

// Primary returns the node that serves slot.
func (c *Cluster) Primary(slot int) (*Server, error) {
	slots, err := c.slots()
	if err != nil {
		return nil, err
	}
	for _, r := range slots {
		if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
			return c.byAddr(r.Nodes[0].Addr)
		}
	}
	return nil, fmt.Errorf("redistest: no node serves slot %d", slot)
}

// Primaries returns the nodes that serve slots.
func (c *Cluster) Primaries() ([]*Server, error) {
	slots, err := c.slots()
	if err != nil {
		return nil, err
	}
	var out []*Server
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			continue
		}
		s, err := c.byAddr(r.Nodes[0].Addr)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (c *Cluster) byAddr(addr string) (*Server, error) {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redistest: no node has address %s", addr)
}

// Slot returns the cluster slot of key, as a running node computes it.
func (c *Cluster) Slot(key string) (int, error) {
	for _, s := range c.Nodes {
		if s.Running() {
			v, err := s.Do("CLUSTER", "KEYSLOT", key)
			if err != nil {
				return 0, err
			}
			n, _ := v.(int64)
			return int(n), nil
		}
	}
	return 0, errors.New("redistest: no node is running")
}

// FlushAll empties every primary, so tests that share a cluster start
// from nothing.
func (c *Cluster) FlushAll() error {
	ps, err := c.Primaries()
	if err != nil {
		return err
	}
	for _, s := range ps {
		if _, err := s.Do("FLUSHALL"); err != nil {
			return err
		}
	}
	return nil
}

// WaitReplicated waits until every primary has a replica that is synced
// (online), for at most timeout.
func (c *Cluster) WaitReplicated(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ps, err := c.Primaries()
		ok := err == nil
		for _, p := range ps {
			if p.ReplicasOnline() == 0 {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: a primary has no replica after %s (%v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Serves reports whether s is the primary of slot in c.
func (s *Server) Serves(c *Cluster, slot int) bool {
	p, err := c.Primary(slot)
	return err == nil && p == s
}
