package durable

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
)

// agreementConfig is the engine of TestConcurrentChecksAgreeWithLedger:
// subjects with starting credits and an hourly calls limit, in two teams
// with a shared calls limit, and a cache small enough that states are
// evicted and loaded back through the Committer all the time.
func agreementConfig(subjects []string) (engine.Rules, engine.Options) {
	cfg := engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{"standard": {Priority: engine.PriorityMedium,
			Limits: []engine.LimitConfig{{Name: "hour", Period: engine.Period{Calendar: "hour", Every: time.Hour}, Max: 40}}}},
		Actions: map[string]engine.ActionConfig{"small": {PerCall: 1}, "large": {PerCall: 5}},
		Users:   map[string]engine.UserConfig{},
		Teams:   map[string]engine.TeamConfig{},
		Roles:   map[string]engine.RoleConfig{"r": {}},
	}
	for i, s := range subjects {
		team := fmt.Sprintf("t%d", i%2)
		cfg.Users[s] = engine.UserConfig{Credits: startingCredits, Team: team}
		cfg.Teams[team] = engine.TeamConfig{Limits: []engine.LimitConfig{
			{Name: "team", Period: engine.Period{Calendar: "hour", Every: time.Hour}, Max: 150}}}
	}
	return cfg, engine.Options{Shards: 2, CacheSize: 6, SyncWrites: true}
}

const startingCredits = 120

// TestConcurrentChecksAgreeWithLedger runs random Checks on shared keys
// in durability sync, through the engine and the Committer as the server
// does, with flushes and profile changes (saves the engine makes itself)
// in between. Copies of the file taken while they run (what a crash
// would leave) and the file after them must each agree exactly: every
// charge in the state has its ledger record, and every record its charge.
func TestConcurrentChecksAgreeWithLedger(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	st, led := openFile(t, path, 0)
	c := NewCommitter(st, led)
	subjects := []string{"ann", "ben", "cat", "dan", "eve", "fay"}
	cfg, opts := agreementConfig(subjects)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	opts.Now = func() time.Time { return t0 }
	opts.Store, opts.Deferrer = c, c
	eng, err := engine.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	const workers, perWorker = 8, 60
	var allowed atomic.Int64
	var wg sync.WaitGroup
	check := func(rng *rand.Rand) error {
		action := "small"
		if rng.IntN(3) == 0 {
			action = "large"
		}
		d, err := eng.Charge(ctx, engine.Request{Subject: subjects[rng.IntN(len(subjects))], Action: action})
		if err != nil {
			return err
		}
		if d.Allowed {
			allowed.Add(1)
		}
		rec := ledger.FromDecision(&d, "", t0)
		return c.Commit(ctx, d.Unsaved, &rec)
	}
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range perWorker {
				if err := check(rng); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var copies []string
	stop := make(chan struct{})
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		rng := rand.New(rand.NewPCG(seed, workers))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// An admin change: dirty state that the next flush saves
			// directly, with whatever charges the state holds by then.
			p := engine.Profile{}
			if rng.IntN(2) == 0 {
				p.Roles = []string{"r"}
			}
			if err := eng.SetProfile(ctx, subjects[rng.IntN(len(subjects))], p); err != nil {
				errs <- err
				return
			}
			if err := eng.Flush(ctx); err != nil {
				errs <- err
				return
			}
			if i%4 == 0 && len(copies) < 5 {
				cp := filepath.Join(dir, fmt.Sprintf("crash-%d.db", len(copies)))
				if err := copyDB(ctx, path, cp); err != nil {
					errs <- err
					return
				}
				copies = append(copies, cp)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		c.mu.Lock()
		t.Fatalf("the Checks did not finish: pending %v, retry %v", c.pending, c.retry)
	}
	close(stop)
	<-adminDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(c.pending) != 0 || len(c.retry) != 0 {
		t.Fatalf("after every Check committed: pending %v, retry %v", c.pending, c.retry)
	}
	if len(copies) == 0 {
		t.Fatal("no copy of the file was taken while the Checks ran")
	}
	for _, cp := range copies {
		t.Run(filepath.Base(cp), func(t *testing.T) { checkAgreement(t, cp, subjects, -1) })
	}
	t.Run("final", func(t *testing.T) { checkAgreement(t, path, subjects, allowed.Load()) })
}

// checkAgreement reopens the file at path and checks that each subject's
// state and team's state hold exactly the charges of their ledger records,
// and, unless wantAllowed < 0, that the ledger has that many charges.
func checkAgreement(t *testing.T, path string, subjects []string, wantAllowed int64) {
	ctx := context.Background()
	st, led := openFile(t, path, 0)
	calls := map[string]int64{}  // allowed records, per subject and team
	tokens := map[string]int64{} // tokens charged, per balance owner
	var records, charges int64
	err := led.Scan(ctx, func(r ledger.Record) bool {
		records++
		if r.Kind == ledger.KindCharge {
			charges++
			calls[r.Subject]++
			calls["team:"+r.Team]++
			tokens[r.BalanceOwner] += r.Charged
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if wantAllowed >= 0 && charges != wantAllowed {
		t.Errorf("ledger holds %d charges, want %d (one per allowed Check)", charges, wantAllowed)
	}
	for _, key := range slices.Concat(subjects, []string{"team:t0", "team:t1"}) {
		snap, ok, err := st.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		for _, w := range snap.Windows {
			used += w.Current
		}
		if used != calls[key] {
			t.Errorf("%s: the state counts %d calls, the ledger %d", key, used, calls[key])
		}
		if strings.HasPrefix(key, "team:") {
			continue
		}
		spent := int64(0)
		if ok {
			spent = startingCredits - snap.Credits
		}
		if spent != tokens[key] {
			t.Errorf("%s: the state spent %d tokens, the ledger charged %d", key, spent, tokens[key])
		}
	}
	t.Logf("%d records, %d charges", records, charges)
}

// copyDB writes a consistent copy of the SQLite file at src to dst, as a
// crash at that moment would leave it.
func copyDB(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", src)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", dst)
	return err
}
