package redistest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Master is the name the Sentinels of a test set know the primary by.
const Master = "qgmaster"

// DownAfter is the Sentinels' down-after-milliseconds: a primary that does
// not answer for this long is failed over.
const DownAfter = 1000 * time.Millisecond

// Sentinels is a primary, its replicas and the Sentinels that watch it.
type Sentinels struct {
	// Data are the primary and its replicas (Data[0] is the first
	// primary); Watchers the Sentinels.
	Data, Watchers []*Server
}

// NewSentinels starts a primary, replicas replicas of it and watchers
// Sentinels (quorum: a majority) that watch it, and waits until every
// Sentinel knows the replicas and the other Sentinels. The caller stops
// them with Close.
func NewSentinels(replicas, watchers int) (*Sentinels, error) {
	ss := &Sentinels{}
	p, err := NewServer()
	if err != nil {
		return nil, err
	}
	ss.Data = append(ss.Data, p)
	host, port := "127.0.0.1", p.Addr[len("127.0.0.1:"):]
	for range replicas {
		r, err := NewServer("--replicaof", host, port)
		if err != nil {
			ss.Close()
			return nil, err
		}
		ss.Data = append(ss.Data, r)
	}
	for range watchers {
		w, err := newSentinel(port, watchers/2+1)
		if err != nil {
			ss.Close()
			return nil, err
		}
		ss.Watchers = append(ss.Watchers, w)
	}
	if err := ss.waitKnown(replicas, watchers, 30*time.Second); err != nil {
		ss.Close()
		return nil, err
	}
	if err := ss.WaitReplicas(replicas, 30*time.Second); err != nil {
		ss.Close()
		return nil, err
	}
	return ss, nil
}

// StartSentinels is NewSentinels for a test: a failure ends the test, and
// the test's cleanup stops every process.
func StartSentinels(tb testing.TB, replicas, watchers int) *Sentinels {
	tb.Helper()
	ss, err := NewSentinels(replicas, watchers)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ss.Close)
	return ss
}

// newSentinel starts redis-server --sentinel watching the primary on
// loopback port primaryPort with quorum.
func newSentinel(primaryPort string, quorum int) (*Server, error) {
	port, err := freePort(false)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest-sentinel")
	if err != nil {
		return nil, fmt.Errorf("redistest: make a directory: %w", err)
	}
	conf, err := writeFile(dir, "sentinel.conf", fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel monitor %s 127.0.0.1 %s %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 3000
sentinel parallel-syncs %s 1
`, port, dir, Master, primaryPort, quorum, Master, DownAfter.Milliseconds(), Master, Master))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, own: true, args: []string{conf, "--sentinel"}}
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// waitKnown waits until every Sentinel sees replicas replicas and the
// other watchers-1 Sentinels.
func (ss *Sentinels) waitKnown(replicas, watchers int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		var last string
		for _, w := range ss.Watchers {
			v, err := w.Do("SENTINEL", "MASTER", Master)
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			m := fields(v)
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != strconv.Itoa(watchers-1) {
				ok, last = false, fmt.Sprintf("%s sees %s replicas and %s other sentinels", w.Addr, m["num-slaves"], m["num-other-sentinels"])
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: the Sentinels are not ready after %s: %s", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fields turns a RESP2 flat list or a RESP3 map reply into a map.
func fields(v any) map[string]string {
	out := map[string]string{}
	switch t := v.(type) {
	case []any:
		for i := 0; i+1 < len(t); i += 2 {
			out[fmt.Sprint(t[i])] = fmt.Sprint(t[i+1])
		}
	case map[any]any:
		for k, x := range t {
			out[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	}
	return out
}

// Addrs returns the Sentinels' addresses.
func (ss *Sentinels) Addrs() []string {
	out := make([]string, len(ss.Watchers))
	for i, w := range ss.Watchers {
		out[i] = w.Addr
	}
	return out
}

// Primary returns the data server that the first running Sentinel reports
// as primary.
func (ss *Sentinels) Primary() (*Server, error) {
	for _, w := range ss.Watchers {
		if !w.Running() {
			continue
		}
		c := goredis.NewSentinelClient(&goredis.Options{Addr: w.Addr, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addr, err := c.GetMasterAddrByName(ctx, Master).Result()
		cancel()
		c.Close()
		if err != nil {
			return nil, err
		}
		for _, s := range ss.Data {
			if len(addr) == 2 && s.Addr == addr[0]+":"+addr[1] {
				return s, nil
			}
		}
		return nil, fmt.Errorf("redistest: the Sentinels report primary %v, not one of the data servers", addr)
	}
	return nil, fmt.Errorf("redistest: no Sentinel is running")
}

// WaitFailover waits until the Sentinels report a primary other than old
// that answers as a primary, for at most timeout.
func (ss *Sentinels) WaitFailover(old *Server, timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := ss.Primary()
		if err == nil && p != old && p.Running() {
			if role, _ := p.Info("replication", "role"); role == "master" {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redistest: no failover from %s within %s (last: %v, %v)", old.Addr, timeout, p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops every process. It is idempotent.
func (ss *Sentinels) Close() {
	for _, s := range append(append([]*Server{}, ss.Watchers...), ss.Data...) {
		s.Close()
	}
}

// WaitReplicas waits until the current primary has n synced (online)
// replicas, for at most timeout.
func (ss *Sentinels) WaitReplicas(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		p, err := ss.Primary()
		if err == nil && p.ReplicasOnline() == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: the primary has not %d replicas after %s (%v)", n, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
