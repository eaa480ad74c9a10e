package engine

import (
	"context"
	"fmt"
	"slices"
)

// ProfileStore keeps subjects' run-time profiles (SetProfile) where every
// replica reads them. When the Authority also implements ProfileStore
// (store/redis does), profiles are shared: SetProfile writes through to
// it, and a replica learns that profiles changed by polling the store at
// most once per its TTL (one round trip for all subjects); a cached
// profile read before the change is then read again before the subject's
// next request is decided. A change made on one replica so takes effect
// on every other within the TTL, while a replica whose profiles do not
// change reads each subject's profile once. No lock is held during a read
// or a poll. Implementations must be safe for concurrent use.
type ProfileStore interface {
	// LoadProfile returns the profile saved for subject, or ok == false
	// when none was ever saved (the cached one is then kept).
	LoadProfile(ctx context.Context, subject string) (p Profile, ok bool, err error)
	// SaveProfile saves p for subject and records that profiles changed;
	// a zero p saves "no overrides".
	SaveProfile(ctx context.Context, subject string, p Profile) error
	// ProfilesChanged returns the time (unix ns) before which a profile
	// read may be out of date, as of the last poll, and whether a poll is
	// due at now (unix ns). It does no I/O.
	ProfilesChanged(now int64) (since int64, pollDue bool)
	// PollProfiles asks the store whether any profile changed since the
	// last poll, at now (unix ns). After a failed call (a poll or a
	// LoadProfile), the next good poll reports a change, so that profiles
	// missed meanwhile are read again.
	PollProfiles(ctx context.Context, now int64) error
}

// profileStore returns the engine's ProfileStore, or nil when profiles
// are not shared.
func (e *Engine) profileStore() ProfileStore {
	ps, _ := e.auth.(ProfileStore)
	return ps
}

// profileLoader is a Store whose Load returns, in the snapshot's Profile,
// the profile the ProfileStore holds (store/redis keeps both in one hash).
// A state it loads, or finds missing, then needs no separate profile read.
type profileLoader interface {
	// LoadsProfiles reports that Load returns the shared profile; a
	// snapshot of Version 0 then holds nothing else.
	LoadsProfiles() bool
}

// profilesLoaded reports whether the engine's Store loads the shared
// profiles with the state, as it says itself (a Store that wraps another
// must forward LoadsProfiles).
func (e *Engine) profilesLoaded() bool {
	if e.profileStore() == nil {
		return false
	}
	pl, ok := e.store.(profileLoader)
	return ok && pl.LoadsProfiles()
}

// shareProfile writes p for subject through to the ProfileStore, if
// profiles are shared, so that the other replicas read it within their
// TTL. SetProfile calls it, with no lock held, before it installs p
// locally: a write that fails changes nothing anywhere.
func (e *Engine) shareProfile(ctx context.Context, subject string, p Profile) error {
	ps := e.profileStore()
	if ps == nil {
		return nil
	}
	if err := ps.SaveProfile(ctx, subject, p); err != nil {
		return fmt.Errorf("engine: set profile of %q: share it with the other replicas: %w", subject, err)
	}
	return nil
}

// refreshProfileLocked polls the ProfileStore when a poll is due and
// re-reads the profile of c's subject when its cached copy may be out of
// date. On entry the locks of c.h are held; when there is I/O to do they
// are released for it and taken again (c.h may then hold other state, or
// another team's). The caller holds the locks of c.h on return unless it
// returns an error.
func (c *charge) refreshProfileLocked(ctx context.Context) error {
	e := c.e
	ps := e.profileStore()
	if ps == nil {
		return nil
	}
	since, due := ps.ProfilesChanged(c.now)
	at, seen := c.h.st.profAt, c.h.st.prof
	// The state may have been loaded after c.now was taken: at > c.now
	// is not a clock going backwards.
	stale := func(since int64) bool { return at == 0 || at < since }
	if !due && !stale(since) {
		return nil
	}
	e.release(ctx, c.h.si, c.h.ti)
	if due {
		// A failed poll is retried at the next due time; meanwhile the
		// cached profiles are used.
		_ = ps.PollProfiles(ctx, c.now)
		since, _ = ps.ProfilesChanged(c.now)
	}
	if stale(since) {
		p, ok, err := ps.LoadProfile(ctx, c.req.Subject)
		if err := c.installProfile(ctx, seen, p, ok && err == nil); err != nil {
			return err
		}
	}
	// A failed read keeps the cached profile, without retrying at every
	// request: the store reports profiles changed after its next good
	// poll. The request goes on: if Redis is down, its charge fails too
	// and the tier's failure mode applies.
	return e.acquire(ctx, c.rs, &c.req, c.user, true, &c.h)
}

// installProfile caches p (when ok) as the profile of c's subject, read
// at c.now, unless the cached profile is no longer seen: a SetProfile on
// this replica since the read wins over what was read. No lock is held.
func (c *charge) installProfile(ctx context.Context, seen *profileState, p Profile, ok bool) error {
	e := c.e
	st, i, err := e.lockKey(ctx, c.rs, c.req.Subject)
	if err != nil {
		return err
	}
	if st.prof == seen {
		st.profAt = c.now
		if ok && !sameProfile(st.prof, p) {
			st.prof = nil
			if !p.isZero() {
				st.prof = &profileState{p: p}
			}
			e.shards[i].mutatedLocked(c.req.Subject, st)
		}
	}
	e.release(ctx, i, -1)
	return nil
}

// sameProfile reports whether ps holds p (nil holds the zero Profile).
func sameProfile(ps *profileState, p Profile) bool {
	var q Profile
	if ps != nil {
		q = ps.p
	}
	if q.Tier != p.Tier || q.Team != p.Team || !slices.Equal(q.Roles, p.Roles) || len(q.Limits) != len(p.Limits) {
		return false
	}
	for i := range q.Limits {
		a, b := q.Limits[i], p.Limits[i]
		if a.Name != b.Name || a.Period != b.Period || a.Max != b.Max || a.Unit != b.Unit || !slices.Equal(a.Actions, b.Actions) ||
			(a.Mode == nil) != (b.Mode == nil) || (a.Mode != nil && *a.Mode != *b.Mode) {
			return false
		}
	}
	return true
}
