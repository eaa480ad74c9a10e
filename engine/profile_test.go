package engine

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeProfiles is an Authority that also shares profiles (ProfileStore),
// written by hand like fakeAuthority, with a poll period of 5s.
type fakeProfiles struct {
	*fakeAuthority
	pmu      sync.Mutex
	saved    map[string]Profile
	epoch    int // bumped by SaveProfile
	seen     int // the epoch at the last poll
	lastPoll int64
	since    int64
	loads    int
}

func (f *fakeProfiles) LoadProfile(_ context.Context, subject string) (Profile, bool, error) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.loads++
	p, ok := f.saved[subject]
	return p.clone(), ok, nil
}

func (f *fakeProfiles) SaveProfile(_ context.Context, subject string, p Profile) error {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	f.saved[subject] = p.clone()
	f.epoch++
	return nil
}

func (f *fakeProfiles) ProfilesChanged(now int64) (int64, bool) {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	due := f.lastPoll == 0 || now-f.lastPoll >= int64(5*time.Second)
	if due {
		f.lastPoll = now
	}
	return f.since, due
}

func (f *fakeProfiles) PollProfiles(_ context.Context, now int64) error {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	if f.epoch != f.seen || f.since == 0 {
		f.seen, f.since = f.epoch, now
	}
	return nil
}

func TestSharedProfile(t *testing.T) {
	now := t0
	f := &fakeProfiles{fakeAuthority: newFakeAuthority(), saved: map[string]Profile{}}
	cfg := authorityConfig(f, &now)
	cfg.Tiers["pro"] = TierConfig{Limits: []LimitConfig{{Name: "hour", Period: hour, Max: 100}}, FailureMode: FailClosed}
	a, b := newEngine(t, cfg), newEngine(t, cfg)
	ctx := context.Background()
	steps := []struct {
		name  string
		at    time.Duration
		share *Profile // shared through a (what SetProfile does)
		tier  Tier
		loads int
	}{
		{name: "first use reads the profile", tier: "free", loads: 1},
		{name: "a shares pro; no poll is due", at: 4 * time.Second, share: &Profile{Tier: "pro"}, tier: "free", loads: 1},
		{name: "the poll sees the change: read again", at: 5 * time.Second, tier: "pro", loads: 2},
		{name: "no change: no read", at: 10 * time.Second, tier: "pro", loads: 2},
		{name: "a shares no overrides", at: 11 * time.Second, share: &Profile{}, tier: "pro", loads: 2},
		{name: "the poll sees it: free again", at: 15 * time.Second, tier: "free", loads: 3},
	}
	for _, s := range steps {
		now = t0.Add(s.at)
		if s.share != nil {
			if err := a.shareProfile(ctx, "pia", *s.share); err != nil {
				t.Fatalf("%s: shareProfile: %v", s.name, err)
			}
		}
		d, err := b.Charge(ctx, Request{Subject: "pia"})
		if err != nil || d.Tier != s.tier || f.loads != s.loads {
			t.Fatalf("%s: Charge = tier %q, %v after %d loads; want tier %q after %d", s.name, d.Tier, err, f.loads, s.tier, s.loads)
		}
	}
}
