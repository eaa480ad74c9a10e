package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SubjectStatus is the state of a subject or team, as the admin API shows
// it.
type SubjectStatus struct {
	// Subject is the subject id, or "team:<name>" for a team.
	Subject string
	Team    string
	// Tier and Priority are the subject's effective ones (empty for a team).
	Tier     Tier
	Priority Priority
	// Limits are every limit that applies to the subject whatever the
	// action, plus the workflow limits it has used, at the time asked.
	Limits []LimitStatus
	// Balance is what the BalanceOwner can spend; HasBalance is false when
	// it has no grant and no credits.
	Balance    int64
	HasBalance bool
	// Allowance and Credits are the two parts of Balance.
	Allowance, Credits int64
	// BalanceOwner is the key that pays: the subject or "team:<name>".
	BalanceOwner string
	// Profile is the subject's run-time profile (SetProfile).
	Profile Profile
	// ProfileProblem says why Profile does not validate under the current
	// configuration (ValidateProfile), in which case Checks ignore it
	// (but for its tier, if still defined) until it is repaired; empty
	// when it validates.
	ProfileProblem string
}

// Status returns the state of key (a subject or "team:<name>") at
// Options.Now(). It charges nothing.
func (e *Engine) Status(ctx context.Context, key string) (SubjectStatus, error) {
	return e.StatusAt(ctx, e.now(), key)
}

// StatusAt returns the state of key at now. It works on copies of the
// state and charges nothing; a subject never seen gets its starting
// state, and reading it creates none (Known still reports false).
func (e *Engine) StatusAt(ctx context.Context, now time.Time, key string) (SubjectStatus, error) {
	if key == "" {
		return SubjectStatus{}, fmt.Errorf("engine: status: %w: the subject id is empty", ErrUnknownSubject)
	}
	rs := e.rules.Load()
	if name, ok := strings.CutPrefix(key, teamKeyPrefix); ok {
		return e.teamStatus(ctx, rs, now, key, name)
	}
	req := Request{Subject: key}
	c := charge{e: e, rs: rs, req: req, now: now.UnixNano(), factor: e.cap.factorValue(), allActions: true,
		lims: new([MaxLimitsPerRequest]applied)}
	c.prepare()
	if err := e.acquire(ctx, rs, &c.req, c.user, false, &c.h); err != nil {
		return SubjectStatus{}, err
	}
	var st *subjectState
	if c.h.st == nil {
		// Never seen: its starting state, which reading does not create.
		// Its team's state is shared with the other members and is read
		// as for them, so that the balance shown is the one a Check pays.
		st = &subjectState{credits: rs.startingCredits(key)}
		name := rs.teamFor(&c.req, c.user, nil)
		c.h = held{si: -1, ti: -1, st: st, team: rs.teams[name], teamName: name}
		if tr := c.h.team; tr.needsState() {
			ts, i, err := e.lockKey(ctx, rs, tr.key)
			if err != nil {
				return SubjectStatus{}, err
			}
			c.h.ts = ts.copyLocked()
			e.release(ctx, i, -1)
		}
	} else {
		st = c.h.st.copyLocked()
		c.h.st = st
		if c.h.ts != nil {
			c.h.ts = c.h.ts.copyLocked()
		}
		e.release(ctx, c.h.si, c.h.ti)
	}

	c.tier = rs.resolveTier(c.static, st.prof)
	s := SubjectStatus{Subject: key, Team: c.h.teamName, Tier: c.tier.name, Priority: c.tier.priority}
	if st.prof != nil {
		s.Profile = st.prof.p.clone()
		if !st.prof.usableLocked(rs, key) {
			s.ProfileProblem = strings.ReplaceAll(st.prof.problem.Error(), "\n", "; ")
		}
	}
	if err := c.collectLocked(); err != nil {
		return SubjectStatus{}, err
	}
	for _, w := range st.windows {
		if wf, _, ok := strings.Cut(strings.TrimPrefix(w.key, "workflow:"), ":"); ok && strings.HasPrefix(w.key, "workflow:") {
			if wr := rs.workflows[wf]; wr != nil {
				if err := c.addAllLocked(wr.limits, st); err != nil {
					return SubjectStatus{}, err
				}
			}
		}
	}
	c.checkLocked()
	owner, grant, ownerKey := c.balanceOwnerLocked()
	if e.auth != nil {
		if err := c.refreshRemote(ctx, owner, grant, ownerKey); err != nil {
			return SubjectStatus{}, err
		}
	}
	s.Limits = c.limitStatuses()
	s.fillBalance(owner, grant, ownerKey, now.UnixNano(), rs)
	return s, nil
}

func (e *Engine) teamStatus(ctx context.Context, rs *ruleset, now time.Time, key, name string) (SubjectStatus, error) {
	st, i, err := e.lockKey(ctx, rs, key)
	if err != nil {
		return SubjectStatus{}, err
	}
	st = st.copyLocked()
	e.release(ctx, i, -1)
	s := SubjectStatus{Subject: key, Team: name}
	t := rs.teams[name]
	var grant TokenGrant
	if t != nil {
		grant = t.grant
		req := Request{Subject: key}
		c := charge{e: e, rs: rs, req: req, now: now.UnixNano(), factor: e.cap.factorValue(), allActions: true,
			lims: new([MaxLimitsPerRequest]applied)}
		c.h.st = st
		if err := c.addAllLocked(t.limits, st); err != nil {
			return SubjectStatus{}, err
		}
		c.checkLocked()
		if e.auth != nil {
			if err := c.refreshRemote(ctx, st, grant, key); err != nil {
				return SubjectStatus{}, err
			}
		}
		s.Limits = c.limitStatuses()
	}
	s.fillBalance(st, grant, key, now.UnixNano(), rs)
	return s, nil
}

func (s *SubjectStatus) fillBalance(owner *subjectState, g TokenGrant, key string, now int64, rs *ruleset) {
	rollGrantLocked(owner, g, now, rs.loc)
	s.BalanceOwner = key
	s.Allowance, s.Credits = owner.allowance, owner.credits
	s.Balance = balanceLocked(owner)
	s.HasBalance = grantActive(g) || owner.credits > 0
}

// limitStatuses describes every collected limit (on copies of the state).
func (c *charge) limitStatuses() []LimitStatus {
	out := make([]LimitStatus, c.n)
	for i := range c.n {
		out[i] = c.limitStatusLocked(&c.lims[i])
	}
	return out
}

// copyLocked returns a copy of st that can be read and rolled without the
// lock. The profile's contents are shared and must not be modified. The
// caller holds st's lock.
func (st *subjectState) copyLocked() *subjectState {
	cp := *st
	cp.windows = slices.Clone(st.windows)
	if st.prof != nil {
		prof := *st.prof
		cp.prof = &prof
	}
	return &cp
}

// Known reports whether subject exists, without creating any state: the
// configuration names it (a user or a team member), or it has state in
// the cache or the Store (it was charged, or given a profile or credits).
// Under Rules.DenyUnknown, a subject that Known denies is refused by
// Checks until a profile is set for it.
func (e *Engine) Known(ctx context.Context, subject string) (bool, error) {
	rs := e.rules.Load()
	if _, ok := rs.users[subject]; ok {
		return true, nil
	}
	if _, ok := rs.teamOf[subject]; ok {
		return true, nil
	}
	i := e.shardIndex(subject)
	sh := &e.shards[i]
	sh.mu.Lock()
	cached := sh.lru.Contains(subject) || sh.pending[subject] != nil
	sh.mu.Unlock()
	if cached {
		return true, nil
	}
	_, ok, err := e.store.Load(ctx, subject)
	e.loads.Add(1)
	if err != nil {
		e.storeErrors.Add(1)
		return false, fmt.Errorf("engine: look up %q: %w", subject, err)
	}
	return ok, nil
}

// lockKey returns the state of key with its shard (index i) locked, loading
// it or creating fresh state if needed. The caller must call
// e.release(ctx, i, -1).
func (e *Engine) lockKey(ctx context.Context, rs *ruleset, key string) (*subjectState, int, error) {
	i := e.shardIndex(key)
	sh := &e.shards[i]
	for range maxAcquireAttempts {
		sh.mu.Lock()
		if st := sh.getLocked(key); st != nil {
			return st, i, nil
		}
		sh.mu.Unlock()
		if _, err := e.load(ctx, rs, i, key, true); err != nil {
			return nil, i, err
		}
	}
	return nil, i, fmt.Errorf("engine: state of %q kept being evicted before use: raise CacheSize", key)
}

// SetProfile sets subject's run-time overrides (tier, roles, team, limits);
// the next request sees them, and usage counted so far is kept, so a tier
// upgrade takes effect at once. A zero Profile removes the overrides. p is
// checked by ValidateProfile first: a profile it refuses changes nothing,
// and the error wraps ErrInvalidProfile (or ErrInvalidSubject).
func (e *Engine) SetProfile(ctx context.Context, subject string, p Profile) error {
	if err := ValidateSubjectID(subject); err != nil {
		return fmt.Errorf("engine: set profile: %w", err)
	}
	rs := e.rules.Load()
	if err := rs.validateProfile(subject, p); err != nil {
		return fmt.Errorf("engine: set profile of %q: %w", subject, err)
	}
	return e.installProfile(ctx, rs, subject, p)
}

// installProfile shares p and installs it as subject's profile.
func (e *Engine) installProfile(ctx context.Context, rs *ruleset, subject string, p Profile) error {
	var prof *profileState
	if !p.isZero() {
		prof = &profileState{p: p.clone()}
	}
	if m, ok := e.auth.(StateMover); ok && e.auth != nil {
		st, i, err := e.lockKey(ctx, rs, subject)
		if err != nil {
			return err
		}
		from, to := rs.tagFor(subject, st.prof), rs.tagFor(subject, prof)
		e.release(ctx, i, -1)
		if from != to {
			if err := m.MoveState(ctx, subject, from, to); err != nil {
				return fmt.Errorf("engine: set profile of %q: move its state from tag %q to %q for its new team: %w; nothing changed, retry when the authority answers", subject, from, to, err)
			}
		}
	}
	// Shared first: a profile that the other replicas cannot read is not
	// installed here either.
	if err := e.shareProfile(ctx, subject, p); err != nil {
		return err
	}
	st, i, err := e.lockKey(ctx, rs, subject)
	if err != nil {
		return err
	}
	st.prof = prof
	e.shards[i].mutatedLocked(subject, st)
	e.release(ctx, i, -1)
	return nil
}

// AddCredits adds delta (which may be negative) to the credits of key, a
// subject or "team:<name>", and returns the balance after it. Credits
// never go below zero nor above MaxCredits: a delta that would pass either
// changes nothing and returns an error wrapping ErrNegativeBalance or
// ErrQuantityTooLarge.
func (e *Engine) AddCredits(ctx context.Context, key string, delta int64) (balance int64, err error) {
	rs := e.rules.Load()
	g, err := rs.creditGrant(key, delta)
	if err != nil {
		return 0, err
	}
	if e.auth != nil {
		return e.addCreditsRemote(ctx, rs, key, delta)
	}
	st, i, err := e.lockKey(ctx, rs, key)
	if err != nil {
		return 0, err
	}
	defer e.release(ctx, i, -1)
	rolled := rollGrantLocked(st, g(st), e.now().UnixNano(), rs.loc)
	if err := checkCredits(key, st.credits, delta); err != nil {
		if rolled {
			e.shards[i].mutatedLocked(key, st)
		}
		return balanceLocked(st), err
	}
	st.credits += delta
	e.shards[i].mutatedLocked(key, st)
	return balanceLocked(st), nil
}

// PreviewCredits reports, changing nothing, whether AddCredits(ctx, key,
// delta) would be accepted now, and the balance before and after it. The
// admin API records a change in the ledger between the preview and the
// change, so that a change the ledger refuses is never made. It is safe
// for concurrent use; a concurrent change may make the AddCredits that
// follows refuse what the preview accepted.
func (e *Engine) PreviewCredits(ctx context.Context, key string, delta int64) (before, after int64, err error) {
	rs := e.rules.Load()
	g, err := rs.creditGrant(key, delta)
	if err != nil {
		return 0, 0, err
	}
	st, i, err := e.lockKey(ctx, rs, key)
	if err != nil {
		return 0, 0, err
	}
	st = st.copyLocked()
	e.release(ctx, i, -1)
	rollGrantLocked(st, g(st), e.now().UnixNano(), rs.loc)
	if err := checkCredits(key, st.credits, delta); err != nil {
		return 0, 0, err
	}
	before = balanceLocked(st)
	return before, before + delta, nil
}

// creditGrant checks key and delta for AddCredits and returns how to find
// the grant of key's state.
func (rs *ruleset) creditGrant(key string, delta int64) (func(*subjectState) TokenGrant, error) {
	if key == "" {
		return nil, fmt.Errorf("engine: add credits: %w: the key is empty", ErrUnknownSubject)
	}
	if delta < -MaxCredits || delta > MaxCredits {
		return nil, fmt.Errorf("engine: add %d credits to %q: %w: a delta must be between -%d and %d", delta, key, ErrQuantityTooLarge, MaxCredits, MaxCredits)
	}
	name, isTeam := strings.CutPrefix(key, teamKeyPrefix)
	if isTeam {
		t := rs.teams[name]
		if !t.pays() {
			return nil, fmt.Errorf("engine: add credits: %w: team %q has none: give it tokens or credits in the config", ErrNoBalance, name)
		}
		return func(*subjectState) TokenGrant { return t.grant }, nil
	}
	static := rs.staticTier(&Request{Subject: key}, rs.users[key])
	return func(st *subjectState) TokenGrant { return rs.resolveTier(static, st.prof).grant }, nil
}

// checkCredits reports whether delta may be added to credits.
func checkCredits(key string, credits, delta int64) error {
	if delta > 0 && credits > MaxCredits-delta {
		return fmt.Errorf("engine: add %d credits to %q: %w: it has %d credits, and at most %d are allowed, so the largest delta allowed is %d",
			delta, key, ErrQuantityTooLarge, credits, MaxCredits, max(MaxCredits-credits, 0))
	}
	if credits+delta < 0 {
		return fmt.Errorf("engine: add %d credits to %q: %w: it has %d credits, so the smallest delta allowed is -%d",
			delta, key, ErrNegativeBalance, credits, credits)
	}
	return nil
}
