package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/engine"
)

// LoadProfile returns the profile saved for subject, or ok == false when
// none was ever saved. The read goes out batched with concurrent Checks,
// within Options.Timeout. The profile is the field "p" of the subject's
// snapshot hash, which snapshots never overwrite.
func (s *Store) LoadProfile(ctx context.Context, subject string) (engine.Profile, bool, error) {
	if s.closed.Load() {
		return engine.Profile{}, false, ErrClosed
	}
	s.profiles.Add(1)
	c := &call{cmd: []any{"HGET", s.snapshotKey(subject), "p"}}
	err := s.batch.do(ctx, c, s.opts.Timeout)
	if errors.Is(err, goredis.Nil) {
		return engine.Profile{}, false, nil
	}
	if err != nil {
		s.prof.failed.Store(true)
		return engine.Profile{}, false, fmt.Errorf("store/redis: load profile of %q: %w", subject, err)
	}
	text, err := c.res.Text()
	if err != nil {
		return engine.Profile{}, false, fmt.Errorf("store/redis: load profile of %q: %w", subject, err)
	}
	var p engine.Profile
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return engine.Profile{}, false, fmt.Errorf("store/redis: load profile of %q: decode: %w", subject, err)
	}
	return p, true, nil
}

// SaveProfile saves p for subject within Options.SnapshotTimeout and
// bumps the profile epoch, which replicas poll. A zero p is saved too, as
// "no overrides", so that replicas drop the ones they cached. Profiles
// never expire.
func (s *Store) SaveProfile(ctx context.Context, subject string, p engine.Profile) error {
	if s.closed.Load() {
		return ErrClosed
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("store/redis: save profile of %q: encode: %w", subject, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SnapshotTimeout)
	defer cancel()
	op := "save profile of " + strconv.Quote(subject)
	if err := s.record(s.client.HSet(ctx, s.snapshotKey(subject), "p", data).Err(), op); err != nil {
		return err
	}
	return s.record(s.client.Incr(ctx, s.epochKey()).Err(), op+": bump the profile epoch")
}

// LoadsProfiles reports that Load returns the shared profile in the
// snapshot's Profile (engine.ProfileStore).
func (s *Store) LoadsProfiles() bool { return true }

// ProfilesChanged returns when profiles last changed as far as this
// replica knows (unix ns), and whether a poll is due at now: once per
// Options.ProfileTTL, to one caller. Concurrent Checks take their times a
// little apart, so a now somewhat before the last poll is no reason to
// poll; only a clock set back by more than the TTL is.
func (s *Store) ProfilesChanged(now int64) (since int64, pollDue bool) {
	last := s.prof.lastPoll.Load()
	ttl := int64(s.opts.ProfileTTL)
	due := now-last >= ttl || last-now > ttl
	if due {
		due = s.prof.lastPoll.CompareAndSwap(last, now)
	}
	return s.prof.since.Load(), due
}

// PollProfiles reads the profile epoch within Options.Timeout (batched
// with concurrent Checks). A new epoch, or the first good poll after a
// failed call, moves the time profiles changed to now.
func (s *Store) PollProfiles(ctx context.Context, now int64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.profiles.Add(1)
	c := &call{cmd: []any{"GET", s.epochKey()}}
	err := s.batch.do(ctx, c, s.opts.Timeout)
	var epoch int64
	switch {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		s.prof.failed.Store(true)
		return fmt.Errorf("store/redis: poll the profile epoch: %w", err)
	default:
		if epoch, err = c.res.Int64(); err != nil {
			return fmt.Errorf("store/redis: poll the profile epoch: %w", err)
		}
	}
	s.prof.mu.Lock()
	defer s.prof.mu.Unlock()
	if !s.prof.polled || epoch != s.prof.epoch || s.prof.failed.Swap(false) {
		s.prof.since.Store(now)
	}
	s.prof.polled, s.prof.epoch = true, epoch
	return nil
}

// profilePoll is what a Store knows of the profile epoch.
type profilePoll struct {
	lastPoll, since atomic.Int64 // unix ns
	// failed is set by a failed poll or profile read.
	failed atomic.Bool
	mu     sync.Mutex
	polled bool  // guarded by mu
	epoch  int64 // guarded by mu
}
