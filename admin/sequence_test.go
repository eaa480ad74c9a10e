package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// seqIDs are the subject ids a random sequence uses: configured ones,
// unknown ones that a PUT may create, and ids that must be refused.
var seqIDs = []string{"alice", "bob", "carol", "dave", "erin", "%00", "a%0Ab", "team:blue", strings.Repeat("z", 300)}

// seqTokens are the tokens a random sequence sends.
var seqTokens = []string{"write", "admin", "blue-write", "green-admin", "read", "blue-read"}

// randomProfileBody returns a profile body, valid or not.
func randomProfileBody(r *rand.Rand, patch bool) string {
	m := map[string]any{}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	if !patch || r.IntN(2) == 0 {
		if r.IntN(3) > 0 {
			m["tier"] = pick("freemium", "standard", "enterprise", "gold", "")
		}
	}
	if r.IntN(2) == 0 {
		var roles []string
		for range r.IntN(4) {
			roles = append(roles, pick("analyst", "auditor", "root", "analyst"))
		}
		m["roles"] = roles
	}
	if r.IntN(3) == 0 {
		m["team"] = pick("blue", "green", "no-such-team", "")
	}
	if r.IntN(2) == 0 {
		var ls []map[string]any
		for i := range r.IntN(20) {
			ls = append(ls, map[string]any{
				"name":   pick(fmt.Sprintf("l%d", i), "hour", "l0"),
				"period": pick("hour", "day", "1s", "1ns", "1500ms", "90s", "9000h"),
				"max":    []int64{5, 0, -1, 100, 1 << 62}[r.IntN(5)],
			})
		}
		m["limits"] = ls
	}
	b, _ := json.Marshal(m)
	if r.IntN(25) == 0 {
		return string(b[:len(b)/2]) // truncated JSON
	}
	return string(b)
}

// seqDump is f.dump plus the store's rows and every ledger record, after
// a flush: what a refused call must leave byte for byte.
func seqDump(t *testing.T, f *fixture, st *sqlite.Store, led *ledger.Ledger) string {
	t.Helper()
	ctx := context.Background()
	if err := f.eng.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	var b strings.Builder
	b.WriteString(f.dump(t))
	for _, key := range append(append([]string(nil), knownIDs...), "team:blue", "team:green") {
		snap, ok, err := st.Load(ctx, key)
		if err != nil {
			t.Fatalf("store Load(%s): %v", key, err)
		}
		j, _ := json.Marshal(snap)
		fmt.Fprintf(&b, "store %s %v %s\n", key, ok, j)
	}
	err := led.Scan(ctx, func(rec ledger.Record) bool {
		j, _ := json.Marshal(rec)
		fmt.Fprintf(&b, "record %s\n", j)
		return true
	})
	if err != nil {
		t.Fatalf("ledger Scan: %v", err)
	}
	return b.String()
}

// TestRandomAdminSequences sends random admin calls (valid and invalid,
// from every kind of token), mixed with Checks, reloads that invalidate
// stored profiles, and ledger outages, to a real admin server on
// loopback with the real engine, a SQLite store and a SQLite ledger.
// Invariants: a refused call (4xx or 5xx) leaves the state, the store and
// the ledger byte-identical; every subject that exists answers GET with
// 200; no Check fails (a failing Check on a fail-open tier would be
// served unmetered), and every allowed Check is metered by some limit.
func TestRandomAdminSequences(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 15))
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	f := newFixture(t, fixtureOpts{cfg: Config{AuthFailuresPerMinute: 1 << 20}, store: st})
	base := engineRules()
	ent := base.Tiers["enterprise"]
	ent.FailureMode = engine.FailOpen
	base.Tiers["enterprise"] = ent
	// strict removes a role and fills enterprise up to the limit cap, so
	// that profiles valid under base become invalid.
	strict := engineRules()
	strict.Roles = map[string]engine.RoleConfig{"analyst": {Limits: []engine.LimitConfig{{Period: hour, Max: 50}}}}
	sent := strict.Tiers["enterprise"]
	sent.FailureMode = engine.FailOpen
	for i := range 14 {
		sent.Limits = append(sent.Limits, engine.LimitConfig{Name: fmt.Sprintf("e%d", i), Period: hour, Max: 1000})
	}
	strict.Tiers["enterprise"] = sent
	if err := f.eng.Reload(base); err != nil {
		t.Fatal(err)
	}

	const steps = 250
	refused, accepted := 0, 0
	for step := range steps {
		f.clock.Advance(time.Duration(r.IntN(120)) * time.Second)
		id := seqIDs[r.IntN(len(seqIDs))]
		token := seqTokens[r.IntN(len(seqTokens))]
		var method, path, body string
		switch op := r.IntN(10); {
		case op < 3:
			method, path, body = "PUT", "/v1/subjects/"+id+"/profile", randomProfileBody(r, false)
		case op < 5:
			method, path, body = "PATCH", "/v1/subjects/"+id+"/profile", randomProfileBody(r, true)
		case op < 7:
			method, path = "POST", "/v1/subjects/"+id+"/credits"
			body = fmt.Sprintf(`{"delta":%d}`, []int64{5, -3, 0, -1 << 63, 1<<63 - 1, engine.MaxCredits, -engine.MaxCredits}[r.IntN(7)])
		case op < 8:
			method, path = "POST", "/v1/teams/"+[]string{"blue", "green", "nope"}[r.IntN(3)]+"/credits"
			body = fmt.Sprintf(`{"delta":%d}`, []int64{5, -1000, engine.MaxCredits}[r.IntN(3)])
		case op < 9:
			method, path = "GET", "/v1/subjects/"+id
		default:
			cfg := base
			if r.IntN(2) == 0 {
				cfg = strict
			}
			if err := f.eng.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			continue
		}
		ledgerDown := r.IntN(8) == 0
		f.led.setFail(ledgerDown)
		before := seqDump(t, f, st, f.led.Ledger)
		code, answer := f.do(t, method, path, body, tokenSecret(token))
		f.led.setFail(false)
		after := seqDump(t, f, st, f.led.Ledger)
		desc := fmt.Sprintf("step %d: %s %s %.200s as %s (ledger down %v) = %d %.300s", step, method, path, body, token, ledgerDown, code, answer)
		switch {
		case code >= 500 && !ledgerDown:
			t.Fatalf("%s: a server error without an outage", desc)
		case code >= 400:
			refused++
			if after != before {
				t.Fatalf("%s: a refused call changed something:\nbefore\n%s\nafter\n%s", desc, before, after)
			}
		case code >= 200 && code < 300:
			accepted++
		default:
			t.Fatalf("%s: unexpected status", desc)
		}
		// Every subject that exists stays readable, and its Checks are
		// decided and metered.
		for _, sub := range knownIDs {
			known, err := f.eng.Known(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			if !known {
				continue
			}
			if code, answer := f.do(t, "GET", "/v1/subjects/"+sub, "", tokenSecret("read")); code != 200 {
				t.Fatalf("after %s: GET %s = %d %s", desc, sub, code, answer)
			}
			d, err := f.eng.ChargeAt(ctx, f.clock.Now(), engine.Request{Subject: sub})
			if err != nil {
				t.Fatalf("after %s: the Check of %s failed (%v): on a fail-open tier it would be served unmetered", desc, sub, err)
			}
			if d.Allowed && len(d.Limits()) == 0 {
				t.Fatalf("after %s: the Check of %s was allowed with no limit applied", desc, sub)
			}
		}
	}
	t.Logf("%d calls accepted, %d refused", accepted, refused)
	if accepted == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: the sequence does not exercise both", accepted, refused)
	}
}
