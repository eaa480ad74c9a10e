package redis

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// count returns the window count ("n:..." field; the subject has one
// limit) and whether key holds a forwarding marker.
func count(t *testing.T, c cluster, key string) (n int64, marker bool) {
	t.Helper()
	slot, err := c.Slot(key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Primary(slot)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Do("HGETALL", key)
	if err != nil {
		t.Fatal(err)
	}
	for k, x := range fields(v) {
		if strings.HasPrefix(k, "n:") {
			n, _ = strconv.ParseInt(x, 10, 64)
		}
		if k == "f" {
			marker = true
		}
	}
	return n, marker
}

// fields turns an HGETALL reply (RESP2 list or RESP3 map) into a map.
func fields(v any) map[string]string {
	out := map[string]string{}
	switch t := v.(type) {
	case []any:
		for i := 0; i+1 < len(t); i += 2 {
			out[t[i].(string)] = t[i+1].(string)
		}
	case map[any]any:
		for k, x := range t {
			out[k.(string)] = x.(string)
		}
	}
	return out
}

// TestClusterTeamMove moves a subject into a team that keeps state (so its
// keys move from its own hash tag to the team's, on another slot) through
// SetProfile on one engine while another engine, whose profile is stale,
// keeps charging it: no usage is lost or counted twice, the stale engine's
// charges of the old hash fail (ErrMoved) until it re-reads the profile,
// and moving again changes nothing.
func TestClusterTeamMove(t *testing.T) {
	c := sharedCluster(t)
	prefix := fresh("mv")
	cfg := testConfig(100000, 0, 0, 0)
	cfg.Teams = map[string]engine.TeamConfig{"ops": {Members: []string{"ann"},
		Tokens: engine.TokenGrant{Amount: 1000000, Period: month}}}
	cfg.Now = nil // the stale engine re-reads profiles on the real clock
	engines, stores := replicas(t, c, Options{Prefix: prefix, Timeout: 2 * time.Second, ProfileTTL: time.Hour}, cfg, 2)
	a, b := engines[0], engines[1]
	ctx := context.Background()
	var admitted atomic.Int64
	for range 5 {
		if d, err := b.Charge(ctx, engine.Request{Subject: "cy"}); err != nil || !d.Allowed {
			t.Fatalf("Charge: %v, %v", d.Allowed, err)
		}
		admitted.Add(1)
	}
	oldKey, newKey := prefix+":{cy}:o:cy", prefix+":{team:ops}:o:cy"
	if n, _ := count(t, c, oldKey); n != 5 {
		t.Fatalf("old hash counts %d, want 5", n)
	}

	stop := make(chan struct{})
	var moved atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := b.Charge(ctx, engine.Request{Subject: "cy"})
				switch {
				case err != nil && strings.Contains(err.Error(), ErrMoved.Error()):
					moved.Add(1)
				case err != nil:
					t.Errorf("Charge: %v", err)
					return
				case d.Allowed:
					admitted.Add(1)
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := a.SetProfile(ctx, "cy", engine.Profile{Team: "ops"}); err != nil {
		t.Fatalf("SetProfile: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if _, marker := count(t, c, oldKey); !marker {
		t.Fatalf("the old hash has no forwarding marker")
	}
	n, _ := count(t, c, newKey)
	if n != admitted.Load() {
		t.Fatalf("the new hash counts %d, but %d were admitted (%d charges of the old hash refused)", n, admitted.Load(), moved.Load())
	}
	// b re-read the profile after the first refusal: it charges the new
	// hash now.
	if d, err := b.Charge(ctx, engine.Request{Subject: "cy"}); err != nil || !d.Allowed {
		t.Fatalf("Charge after the move: %v, %v", d.Allowed, err)
	}
	if n2, _ := count(t, c, newKey); n2 != n+1 {
		t.Fatalf("the new hash counts %d after one more, want %d", n2, n+1)
	}
	// A retried move (another replica's reload, say) changes nothing.
	if err := stores[1].MoveState(ctx, "cy", "cy", "team:ops"); err != nil {
		t.Fatal(err)
	}
	if n3, _ := count(t, c, newKey); n3 != n+1 {
		t.Fatalf("a retried move made the count %d, want %d", n3, n+1)
	}
	// And back: the marker of the way out is replaced by the state.
	if err := a.SetProfile(ctx, "cy", engine.Profile{}); err != nil {
		t.Fatal(err)
	}
	if n4, marker := count(t, c, oldKey); n4 != n+1 || marker {
		t.Fatalf("after moving back the old hash counts %d (marker %v), want %d and no marker", n4, marker, n+1)
	}
	t.Logf("%d admitted; %d charges of the old hash refused while the stale engine caught up", admitted.Load(), moved.Load())
}

// TestClusterMovesRandomized runs a random sequence of charges (through a
// fresh engine and one whose profile may be stale), team changes (none,
// ops, dev; each keeps state) and retried moves, and checks after every
// step that the hash under the subject's current tag counts exactly the
// admissions: no move loses or doubles usage.
func TestClusterMovesRandomized(t *testing.T) {
	c := sharedCluster(t)
	prefix := fresh("mvr")
	cfg := testConfig(1<<40, 0, 0, 0)
	grant := engine.TokenGrant{Amount: 1 << 40, Period: month}
	cfg.Teams = map[string]engine.TeamConfig{"ops": {Members: []string{"ann"}, Tokens: grant},
		"dev": {Members: []string{"bob"}, Tokens: grant}}
	cfg.Now = nil
	engines, stores := replicas(t, c, Options{Prefix: prefix, Timeout: 2 * time.Second, ProfileTTL: time.Hour}, cfg, 2)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(19, 19))
	teams := []string{"", "ops", "dev"}
	team, prev := "", ""
	tag := func(team string) string {
		if team == "" {
			return "dy"
		}
		return "team:" + team
	}
	var admitted int64
	for step := range 150 {
		switch op := r.IntN(10); {
		case op < 7:
			d, err := engines[r.IntN(2)].Charge(ctx, engine.Request{Subject: "dy"})
			switch {
			case err != nil && !strings.Contains(err.Error(), ErrMoved.Error()):
				t.Fatalf("step %d: Charge: %v", step, err)
			case err == nil && d.Allowed:
				admitted++
			}
		case op < 9:
			next := teams[r.IntN(len(teams))]
			if err := engines[0].SetProfile(ctx, "dy", engine.Profile{Team: next}); err != nil {
				t.Fatalf("step %d: SetProfile team %q: %v", step, next, err)
			}
			if next != team {
				prev, team = team, next
			}
		default:
			// Another replica retries the last move.
			if err := stores[1].MoveState(ctx, "dy", tag(prev), tag(team)); err != nil {
				t.Fatalf("step %d: MoveState: %v", step, err)
			}
		}
		if n, marker := count(t, c, prefix+":{"+tag(team)+"}:o:dy"); n != admitted || marker {
			t.Fatalf("step %d (team %q): the hash counts %d (marker %v), want %d", step, team, n, marker, admitted)
		}
	}
}
