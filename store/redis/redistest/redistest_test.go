package redistest

import (
	"testing"
	"time"
)

func TestClusterFailsOver(t *testing.T) {
	c := StartCluster(t, 3, 1)
	ps, err := c.Primaries()
	if err != nil || len(ps) != 3 {
		t.Fatalf("Primaries() = %d nodes, %v; want 3", len(ps), err)
	}
	slot, err := c.Slot("{team:ops}:o:ann")
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Primary(slot)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Kill()
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	q, err := c.Primary(slot)
	if err != nil || q == p {
		t.Fatalf("after the kill slot %d is served by %v, %v; want the replica", slot, q, err)
	}
	t.Logf("slot %d failed over from %s to %s in %s", slot, p.Addr, q.Addr, time.Since(start))
}

func TestSentinelsFailOver(t *testing.T) {
	ss := StartSentinels(t, 1, 3)
	p, err := ss.Primary()
	if err != nil || p != ss.Data[0] {
		t.Fatalf("Primary() = %v, %v; want the first data server", p, err)
	}
	start := time.Now()
	p.Kill()
	q, err := ss.WaitFailover(p, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if q != ss.Data[1] {
		t.Fatalf("after the kill the primary is %s, want the replica %s", q.Addr, ss.Data[1].Addr)
	}
	t.Logf("failed over from %s to %s in %s", p.Addr, q.Addr, time.Since(start))
}
