package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/engine"
)

// saveScript stores snapshot ARGV[2] with version ARGV[1] in hash KEYS[1]
// unless the hash holds a higher or equal version. Versions are compared
// as decimal strings (length first), since a uint64 does not fit a Lua
// number.
var saveScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if v and (#v > #ARGV[1] or (#v == #ARGV[1] and v >= ARGV[1])) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
return 1
`)

// Load returns the snapshot saved for key, or ok == false if none, with
// the shared profile (SaveProfile) in place of the one the snapshot was
// saved with, which may be older. The read goes out batched with
// concurrent Checks.
func (s *Store) Load(ctx context.Context, key string) (engine.Snapshot, bool, error) {
	if s.closed.Load() {
		return engine.Snapshot{}, false, ErrClosed
	}
	s.loads.Add(1)
	c := &call{cmd: []any{"HMGET", s.snapshotKey(key), "d", "p"}}
	if err := s.batch.do(ctx, c, s.opts.SnapshotTimeout); err != nil {
		return engine.Snapshot{}, false, fmt.Errorf("store/redis: load %q: %w", key, err)
	}
	vals, err := c.res.Slice()
	if err != nil || len(vals) != 2 {
		return engine.Snapshot{}, false, fmt.Errorf("store/redis: load %q: HMGET answered %v, %v; want 2 values", key, vals, err)
	}
	var snap engine.Snapshot
	data, ok := vals[0].(string)
	if ok {
		if err := json.Unmarshal([]byte(data), &snap); err != nil {
			return engine.Snapshot{}, false, fmt.Errorf("store/redis: load %q: decode: %w", key, err)
		}
	}
	if prof, isSet := vals[1].(string); isSet {
		snap.Profile = engine.Profile{}
		if err := json.Unmarshal([]byte(prof), &snap.Profile); err != nil {
			return engine.Snapshot{}, false, fmt.Errorf("store/redis: load the profile of %q: decode: %w", key, err)
		}
		ok = true
	}
	if !ok {
		return engine.Snapshot{}, false, nil
	}
	snap.Key = key
	return snap, true, nil
}

// Save stores each snapshot unless a higher or equal version of its key is
// stored already. The snapshots are sent in one pipeline; each is saved
// atomically, the batch is not.
func (s *Store) Save(ctx context.Context, snaps []engine.Snapshot) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(snaps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SnapshotTimeout)
	defer cancel()
	if err := s.record(saveScript.Load(ctx, s.client).Err(), "save: load script"); err != nil {
		return err
	}
	pipe := s.client.Pipeline()
	for i := range snaps {
		data, err := json.Marshal(snaps[i])
		if err != nil {
			return fmt.Errorf("store/redis: save %q: encode: %w", snaps[i].Key, err)
		}
		saveScript.EvalSha(ctx, pipe, []string{s.snapshotKey(snaps[i].Key)},
			strconv.FormatUint(snaps[i].Version, 10), data)
	}
	_, err := pipe.Exec(ctx)
	return s.record(err, fmt.Sprintf("save %d snapshots", len(snaps)))
}
