package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/store/redis/redistest"
)

// failoverLimit is each subject's hourly limit in the failover tests, and
// failoverSubjects how many subjects share the load.
const (
	failoverLimit    = 1 << 40
	failoverSubjects = 12
	failoverWorkers  = 12
	failoverTimeout  = 100 * time.Millisecond
)

// failoverReport is what a failover under load did to admissions.
type failoverReport struct {
	// Over sums, over the subjects, the admissions that Redis did not
	// count, and Under the counts that were not admitted; Admitted is
	// the admissions.
	Over, Under, Admitted int64
	// Failed counts the Checks that got an error (the failure mode
	// decided), Took the longest any Check waited, and Lag the longest a
	// 5ms sleep overslept meanwhile: how late the machine (2 shared cores,
	// the race detector) ran goroutines, which no deadline can beat.
	Failed int64
	Took   time.Duration
	Lag    time.Duration
	// Unhealthy reports whether the store said so during the window.
	Unhealthy bool
}

// failoverUnderLoad charges failoverSubjects subjects (a limit never
// reached, failing closed) from failoverWorkers goroutines over 3 engines
// on tg; after a moment it calls kill, which stops a primary and returns
// once its replica serves, keeps the load on a little longer, calls heal
// (which brings the stopped server back as a replica), then compares each subject's admissions with what Redis counted, and reports.
func failoverUnderLoad(t *testing.T, tg target, prefix string, wait int, kill, heal func()) failoverReport {
	t.Helper()
	cfg := engineConfig{Rules: engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{"closed": {
			Limits:      []engine.LimitConfig{{Name: "hour", Period: hour, Max: failoverLimit}},
			FailureMode: engine.FailClosed,
		}},
		DefaultTier: "closed",
	}}
	engines, stores := replicas(t, tg, Options{Prefix: prefix, Timeout: failoverTimeout, WaitReplicas: wait}, cfg, 3)
	var rep failoverReport
	var admitted [failoverSubjects]atomic.Int64
	var failed atomic.Int64
	var took atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range failoverWorkers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(failoverSubjects)
				start := time.Now()
				d, err := engines[w%3].Charge(context.Background(), engine.Request{Subject: fmt.Sprintf("f%d", i)})
				el := time.Since(start)
				for old := took.Load(); int64(el) > old && !took.CompareAndSwap(old, int64(el)); old = took.Load() {
				}
				switch {
				case err != nil:
					failed.Add(1)
					time.Sleep(time.Millisecond) // as a client would back off
				case d.Allowed:
					admitted[i].Add(1)
				}
			}
		})
	}
	var lag atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(5 * time.Millisecond)
			if l := int64(time.Since(t0) - 5*time.Millisecond); l > lag.Load() {
				lag.Store(l)
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, st := range stores {
				if !st.Healthy() {
					rep.Unhealthy = true
				}
			}
		}
	}()
	kill()
	time.Sleep(1500 * time.Millisecond) // exactness resumes without a restart
	close(stop)
	wg.Wait()
	<-done
	rep.Failed, rep.Took, rep.Lag = failed.Load(), time.Duration(took.Load()), time.Duration(lag.Load())
	heal()
	// One more Check per subject reads what Redis counted: an admission
	// it did not count (a charge acknowledged, then lost with the primary)
	// is over-admission; a count without an admission (a charge that ran
	// but whose reply was lost, refused by the failure mode) is
	// under-admission.
	for i := range failoverSubjects {
		var d engine.Decision
		var err error
		for n := 0; n < 100; n++ {
			if d, err = engines[n%3].Charge(context.Background(), engine.Request{Subject: fmt.Sprintf("f%d", i)}); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil || !d.Allowed {
			t.Fatalf("f%d after the failover: allowed %v, %v; want allowed", i, d.Allowed, err)
		}
		a, counted := admitted[i].Load()+1, d.Binding.Used
		if a > counted {
			rep.Over += a - counted
		} else {
			rep.Under += counted - a
		}
		rep.Admitted += a
	}
	for _, st := range stores {
		// Health is the last call's: each store makes one more.
		if err := st.Ping(context.Background()); err != nil || !st.Healthy() {
			t.Errorf("a store is still unhealthy after the failover: %v, %v", err, st.LastError())
		}
	}
	t.Logf("failover under load: over-admitted %d, under-admitted %d of %d admitted; %d Checks decided by the failure mode; longest Check %s (scheduling lag up to %s); degraded seen %v",
		rep.Over, rep.Under, rep.Admitted, rep.Failed, rep.Took, rep.Lag, rep.Unhealthy)
	return rep
}

// checkFailover asserts the bounds that the package doc states. With
// WaitReplicas, no admission is lost (over 0), and a count without an
// admission comes only from a Check that failed (under at most Failed).
// Without, the charges of the replication lag may be lost: over is only
// reported. Either way no Check waits past the deadline (plus scheduling
// slack), and the store reports itself degraded meanwhile.
func checkFailover(t *testing.T, rep failoverReport, wait int) {
	t.Helper()
	if wait > 0 && (rep.Over != 0 || rep.Under > rep.Failed) {
		t.Errorf("over %d, under %d with WAIT: want 0 over, and under at most the %d failed Checks", rep.Over, rep.Under, rep.Failed)
	}
	if wait == 0 && rep.Under > rep.Failed {
		t.Errorf("under %d: want at most the %d failed Checks", rep.Under, rep.Failed)
	}
	// The deadline's timer fires late by up to the lag, and the woken
	// Check runs late by up to the lag again.
	if rep.Took > failoverTimeout+400*time.Millisecond+2*rep.Lag {
		t.Errorf("a Check waited %s, want within the %s deadline (plus twice the %s the machine ran goroutines late)", rep.Took, failoverTimeout, rep.Lag)
	}
	if rep.Failed == 0 || !rep.Unhealthy {
		t.Errorf("%d Checks failed, degraded seen %v: want the failure mode and a degraded store during the window", rep.Failed, rep.Unhealthy)
	}
}

// exactAfter checks that exactness holds again, with 64 concurrent Checks
// over 3 engines on tg for a subject whose keys live on node (the
// promoted replica).
func exactAfter(t *testing.T, tg target, prefix, subject string) {
	t.Helper()
	engines, _ := replicas(t, tg, Options{Prefix: prefix, Timeout: 5 * time.Second}, testConfig(25, 0, 0, 0), 3)
	if got := hammer(t, engines, func(int) engine.Request { return engine.Request{Subject: subject} }); got != 25 {
		t.Fatalf("after the failover, %d of 64 admitted, want exactly 25", got)
	}
}

// TestClusterFailover kills the primary of a slot that some subjects live
// in, under load, and lets its replica be promoted (cluster-node-timeout
// 1s). The killed node then comes back as a replica, so the shared cluster
// is whole again for the tests after.
func TestClusterFailover(t *testing.T) {
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait_replicas %d", wait), func(t *testing.T) {
			c := sharedCluster(t)
			prefix := fresh(fmt.Sprintf("fo%d", wait))
			slot, err := c.Slot(prefix + ":{f0}:o:f0")
			if err != nil {
				t.Fatal(err)
			}
			victim, err := c.Primary(slot)
			if err != nil {
				t.Fatal(err)
			}
			rep := failoverUnderLoad(t, c, prefix, wait, func() {
				victim.Kill()
				if err := c.WaitHealthy(20 * time.Second); err != nil {
					t.Fatal(err)
				}
			}, func() {
				// The killed node comes back as a replica, which WAIT
				// needs, and the shared cluster is whole again for the
				// tests after.
				if err := victim.Start(); err != nil {
					t.Fatal(err)
				}
				if err := c.WaitHealthy(20 * time.Second); err != nil {
					t.Fatal(err)
				}
				if err := c.WaitReplicated(20 * time.Second); err != nil {
					t.Fatal(err)
				}
			})
			checkFailover(t, rep, wait)
			exactAfter(t, c, prefix+"after", "f0")
		})
	}
}

// sentinels is a Sentinel set as a target.
type sentinels struct{ *redistest.Sentinels }

func (s sentinels) open(t testing.TB, opts Options) *Store {
	opts.SentinelMaster, opts.SentinelAddrs = redistest.Master, s.Addrs()
	return openStore(t, opts)
}

// TestSentinelFailover kills the primary of 1 primary + 1 replica watched
// by 3 Sentinels (down after 1s), under load, twice: the first one killed
// comes back as a replica, and is promoted again the second time.
func TestSentinelFailover(t *testing.T) {
	ss := sentinels{redistest.StartSentinels(t, 1, 3)}
	for _, wait := range []int{0, 1} {
		t.Run(fmt.Sprintf("wait_replicas %d", wait), func(t *testing.T) {
			old, err := ss.Primary()
			if err != nil {
				t.Fatal(err)
			}
			prefix := fmt.Sprintf("sfo%d", wait)
			rep := failoverUnderLoad(t, ss, prefix, wait, func() {
				old.Kill()
				if _, err := ss.WaitFailover(old, 30*time.Second); err != nil {
					t.Fatal(err)
				}
			}, func() {
				// The old primary comes back as a replica of the new one,
				// as an operator would restart it (the Sentinels would
				// reconfigure it too, but only after several seconds),
				// and WAIT needs a replica.
				if err := old.Start(); err != nil {
					t.Fatal(err)
				}
				p, err := ss.Primary()
				if err != nil {
					t.Fatal(err)
				}
				host, port, _ := strings.Cut(p.Addr, ":")
				if _, err := old.Do("REPLICAOF", host, port); err != nil {
					t.Fatal(err)
				}
				if err := ss.WaitReplicas(1, 30*time.Second); err != nil {
					t.Fatal(err)
				}
			})
			checkFailover(t, rep, wait)
			exactAfter(t, ss, prefix+"after", "f0")
		})
	}
}
