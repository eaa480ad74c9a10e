package main

import (
	"context"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz"
	"github.com/quotagate/quotagate/telemetry"
)

// telemetryDecision translates an extauthz verdict (and the engine decision
// in it) into the engine-free telemetry.Decision.
func telemetryDecision(in *extauthz.Input, v *extauthz.Verdict) telemetry.Decision {
	d := &v.Decision
	td := telemetry.Decision{
		Outcome:            telemetry.OutcomeAllow,
		Reason:             v.Metadata.Reason,
		Tier:               string(d.Tier),
		Priority:           d.Priority.String(),
		Action:             v.Metadata.Action,
		Workflow:           v.Metadata.Workflow,
		Cost:               d.Cost,
		Charged:            d.Charged,
		Units:              d.Units,
		BalanceAfter:       d.Balance,
		HasBalance:         d.HasBalance,
		DecisionID:         v.Metadata.DecisionID,
		FailureModeApplied: v.FailureModeApplied,
		Subject:            d.Subject,
		Method:             in.Method,
		Path:               in.Path,
		HTTPStatus:         v.Status,
		Err:                v.Err,
	}
	if td.Reason == "" {
		td.Reason = d.Reason.String()
	}
	if td.Tier == "" {
		td.Tier = v.Metadata.Tier
	}
	if td.Action == "" {
		td.Action = d.Action
	}
	if td.Workflow == "" {
		td.Workflow = d.Workflow
	}
	switch {
	case v.Err != nil:
		td.Outcome = telemetry.OutcomeError
	case !v.Allowed:
		td.Outcome = telemetry.OutcomeDeny
	}
	if td.Outcome != telemetry.OutcomeAllow {
		td.Message = d.Message
		if td.Message == "" {
			td.Message = v.Code
		}
	}
	if d.HasBinding {
		td.LimitName, td.Limit, td.Remaining, td.Reset = d.Binding.Name, d.Binding.Limit, d.Binding.Remaining, d.Binding.Reset
	}
	return td
}

// engineStats feeds the engine cache, shard and event metrics.
func engineStats(eng *engine.Engine) telemetry.EngineStats {
	s := eng.Stats()
	return telemetry.EngineStats{
		CacheHits: int64(s.Hits), CacheMisses: int64(s.Misses), CacheEvictions: int64(s.Evictions),
		Subjects: int64(s.Subjects), Shards: s.Shards, EventsEmitted: int64(s.EventsEmitted),
	}
}

// tierStats feeds the configured-limit gauge, per tier and limit, from the
// engine's current configuration (so a reload shows at the next scrape).
// Utilization comes from the quota.limit.utilization histogram, which every
// decision feeds, so HasUtilization stays false here.
func tierStats(eng *engine.Engine) []telemetry.TierStat {
	var out []telemetry.TierStat
	for tier, tc := range eng.Rules().Tiers {
		for _, l := range tc.Limits {
			name := l.Name
			if name == "" {
				name = l.Period.String()
			}
			out = append(out, telemetry.TierStat{Tier: string(tier), Limit: name, Max: l.Max})
		}
	}
	return out
}

// timedStore times every store call for the quota.store.duration
// histogram. Store calls happen on cache misses, evictions and flushes,
// never under an engine lock.
type timedStore struct {
	engine.Store
	rec *telemetry.Recorder
}

func (s timedStore) Load(ctx context.Context, key string) (engine.Snapshot, bool, error) {
	t := time.Now()
	snap, ok, err := s.Store.Load(ctx, key)
	s.rec.RecordStoreOp(ctx, "load", time.Since(t), err)
	return snap, ok, err
}

// LoadsProfiles forwards the wrapped store's answer (store/redis loads
// the shared profile with the state, sparing the engine a read).
func (s timedStore) LoadsProfiles() bool {
	pl, ok := s.Store.(interface{ LoadsProfiles() bool })
	return ok && pl.LoadsProfiles()
}

// timedForgetter is a timedStore around a Store that can forget idle
// state (the in-memory store), forwarding engine.Forgetter.
type timedForgetter struct {
	timedStore
	f engine.Forgetter
}

func (s timedForgetter) Forget(ctx context.Context, keys []engine.KeyVersion) error {
	t := time.Now()
	err := s.f.Forget(ctx, keys)
	s.rec.RecordStoreOp(ctx, "forget", time.Since(t), err)
	return err
}

func (s timedForgetter) Sweep(max int, idle func(*engine.Snapshot) bool) (visited, dropped int) {
	return s.f.Sweep(max, idle)
}

func (s timedStore) Save(ctx context.Context, snaps []engine.Snapshot) error {
	t := time.Now()
	err := s.Store.Save(ctx, snaps)
	s.rec.RecordStoreOp(ctx, "save", time.Since(t), err)
	return err
}
