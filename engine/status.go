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
}

// Status returns the state of key (a subject or "team:<name>") at
// cfg.Now(). It charges nothing.
func (e *Engine) Status(ctx context.Context, key string) (SubjectStatus, error) {
	return e.StatusAt(ctx, e.now(), key)
}

// StatusAt returns the state of key at now. It works on copies of the
// state and charges nothing; a subject never seen gets its starting state.
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
	if err := e.acquire(ctx, rs, &c.req, c.user, true, &c.h); err != nil {
		return SubjectStatus{}, err
	}
	st := c.h.st.copyLocked()
	c.h.st = st
	if c.h.ts != nil {
		c.h.ts = c.h.ts.copyLocked()
	}
	e.release(ctx, c.h.si, c.h.ti)

	c.tier = rs.resolveTier(c.static, st.prof)
	s := SubjectStatus{Subject: key, Team: c.h.teamName, Tier: c.tier.name, Priority: c.tier.priority}
	if st.prof != nil {
		s.Profile = st.prof.p.clone()
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
// upgrade takes effect at once. A zero Profile removes the overrides.
func (e *Engine) SetProfile(ctx context.Context, subject string, p Profile) error {
	if subject == "" || strings.HasPrefix(subject, teamKeyPrefix) {
		return fmt.Errorf("engine: set profile: %w: %q is not a subject id", ErrUnknownSubject, subject)
	}
	rs := e.rules.Load()
	if p.Tier != "" {
		if _, ok := rs.tiers[p.Tier]; !ok {
			return fmt.Errorf("engine: set profile of %q: %w %q: use one of the configured tiers", subject, ErrUnknownTier, p.Tier)
		}
	}
	v := &validator{}
	validateLimits(v, "profile.limits", p.Limits)
	if err := v.err(); err != nil {
		return fmt.Errorf("engine: set profile of %q: %w", subject, err)
	}
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
// never go below zero: a delta that would make them negative changes
// nothing and returns an error wrapping ErrNegativeBalance.
func (e *Engine) AddCredits(ctx context.Context, key string, delta int64) (balance int64, err error) {
	if key == "" {
		return 0, fmt.Errorf("engine: add credits: %w: the key is empty", ErrUnknownSubject)
	}
	rs := e.rules.Load()
	name, isTeam := strings.CutPrefix(key, teamKeyPrefix)
	if t := rs.teams[name]; isTeam && !t.pays() {
		return 0, fmt.Errorf("engine: add credits: team %q has no shared balance: give it tokens or credits in the config", name)
	}
	if e.auth != nil {
		return e.addCreditsRemote(ctx, rs, key, delta)
	}
	st, i, err := e.lockKey(ctx, rs, key)
	if err != nil {
		return 0, err
	}
	defer e.release(ctx, i, -1)
	var g TokenGrant
	if isTeam {
		g = rs.teams[name].grant
	} else {
		g = rs.resolveTier(rs.staticTier(&Request{Subject: key}, rs.users[key]), st.prof).grant
	}
	rollGrantLocked(st, g, e.now().UnixNano(), rs.loc)
	if st.credits+delta < 0 {
		return balanceLocked(st), fmt.Errorf("engine: add %d credits to %q: %w: it has %d credits, so the smallest delta allowed is -%d",
			delta, key, ErrNegativeBalance, st.credits, st.credits)
	}
	st.credits += delta
	e.shards[i].mutatedLocked(key, st)
	return balanceLocked(st), nil
}
