package redis

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/engine"
)

var _ engine.Settler = (*Store)(nil)

// Pending decisions. A decision that may be settled is recorded by the
// charge script that admits it, in the hash "<prefix>:{<slot tag>}:d:<id>"
// (field "r": the record as JSON; "fa" and "fc": what its cost took from
// the allowance and from the credits), which expires after PendingMaxAge.
// Any replica must find it from the decision id alone, and in a cluster
// the charge script can only write to the owner's slot; so the store
// writes the slot of the owner's keys into the id (14 of its random bits:
// pendingID), and names the record's key with a hash tag that hashes to
// that slot (slotTag). Settling deletes the record and sets the mark
// "<prefix>:{<slot tag>}:ds:<id>" (kept for PendingMaxAge) in the same
// script that changes the owner's balance and windows, so a decision is
// settled at most once, on any replica.

// crc16 is the CRC-16/XMODEM of b (polynomial 0x1021, initial 0), which
// Redis Cluster hashes keys with.
func crc16(b string) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc ^= uint16(b[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the Redis Cluster slot of key: of the part between its first
// '{' and the next '}' when that part is not empty, else of the key.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) & 16383)
}

var (
	slotTagsOnce sync.Once
	slotTags     [16384]string
)

// slotTag returns a short string that hashes to slot.
func slotTag(slot int) string {
	slotTagsOnce.Do(func() {
		left := len(slotTags)
		for i := 0; left > 0; i++ {
			s := strconv.FormatInt(int64(i), 36)
			if sl := crc16(s) & 16383; slotTags[sl] == "" {
				slotTags[sl] = s
				left--
			}
		}
	})
	return slotTags[slot&16383]
}

// pendingID returns id with the slot of tag's keys in its random bits 2
// to 15 (after the variant), where Pending and Settle read it back.
func (s *Store) pendingID(tag string, id uuid.UUID) uuid.UUID {
	slot := keySlot(s.stateKey(tag, ""))
	id[8] = 0x80 | byte(slot>>8)&0x3f
	id[9] = byte(slot)
	return id
}

// idSlot is the slot pendingID wrote into id.
func idSlot(id uuid.UUID) int { return int(id[8]&0x3f)<<8 | int(id[9]) }

func (s *Store) pendingKey(id uuid.UUID) string {
	return s.opts.Prefix + ":{" + slotTag(idSlot(id)) + "}:d:" + hex.EncodeToString(id[:])
}

func (s *Store) settledKey(id uuid.UUID) string {
	return s.opts.Prefix + ":{" + slotTag(idSlot(id)) + "}:ds:" + hex.EncodeToString(id[:])
}

// encodePending is the record's "r" field. FromAllowance and FromCredits
// are the script's to fill.
func encodePending(r *engine.PendingRecord) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode the pending decision %s: %w", r.ID, err)
	}
	return string(b), nil
}

// recordSource records a pending decision served from leased blocks (no
// charge script ran): KEYS[1] the record's hash, ARGV the record, its TTL
// (ms) and its cost, all of it from the allowance. It is sent with EVAL
// in the batcher's pipeline, shared with the Checks in flight.
const recordSource = `redis.call('HSET', KEYS[1], 'r', ARGV[1], 'fa', ARGV[3], 'fc', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

// recordPending records p.Pending on its own, within Options.Timeout,
// through the batcher. An error means the Check's outcome is unknown: its
// block was used, but its record may be missing.
func (s *Store) recordPending(ctx context.Context, p *engine.Plan) error {
	rec, err := encodePending(&p.Pending.Record)
	if err != nil {
		return fmt.Errorf("store/redis: charge %q: %w", p.Tag, err)
	}
	cost := p.Balance.Cost
	if p.Balance.Unlimited || p.Balance.Owner == "" {
		cost = 0
	}
	c := &call{cmd: []any{"EVAL", recordSource, 1, s.pendingKey(p.Pending.Record.ID), rec,
		max(p.Pending.TTL.Milliseconds(), 1), cost}}
	if err := s.batch.do(ctx, c, s.opts.Timeout); err != nil {
		return fmt.Errorf("store/redis: record the pending decision %s: %w", p.Pending.Record.ID, err)
	}
	if c.err != nil {
		return fmt.Errorf("store/redis: record the pending decision %s: %w", p.Pending.Record.ID, c.err)
	}
	return nil
}

// readPendingScript returns the record hash's fields r, fa and fc, and
// whether the settled mark exists: KEYS are the record and the mark.
var readPendingScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'r', 'fa', 'fc')
return {h[1] or '', h[2] or '0', h[3] or '0', tostring(redis.call('EXISTS', KEYS[2]))}
`)

// Pending reads the pending decision id within Options.Timeout.
func (s *Store) Pending(ctx context.Context, id uuid.UUID) (rec engine.PendingRecord, found, settled bool, err error) {
	if s.closed.Load() {
		return rec, false, false, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	vals, err := readPendingScript.Run(ctx, s.client, []string{s.pendingKey(id), s.settledKey(id)}).StringSlice()
	if err := s.record(err, "read the pending decision "+id.String()); err != nil {
		return rec, false, false, err
	}
	if len(vals) != 4 {
		return rec, false, false, fmt.Errorf("store/redis: read the pending decision %s: the script returned %d values, want 4", id, len(vals))
	}
	if vals[3] == "1" {
		return rec, false, true, nil
	}
	if vals[0] == "" {
		return rec, false, false, nil
	}
	if err := json.Unmarshal([]byte(vals[0]), &rec); err != nil || rec.ID != id {
		return rec, false, false, fmt.Errorf("store/redis: the pending decision %s does not decode (%v): delete key %s", id, err, s.pendingKey(id))
	}
	fa, err1 := strconv.ParseInt(vals[1], 10, 64)
	fc, err2 := strconv.ParseInt(vals[2], 10, 64)
	if err1 != nil || err2 != nil || fa < 0 || fc < 0 || fa > engine.MaxQuantity || fc > engine.MaxQuantity {
		return rec, false, false, fmt.Errorf("store/redis: the pending decision %s holds a bad split %q/%q: delete key %s", id, vals[1], vals[2], s.pendingKey(id))
	}
	rec.FromAllowance, rec.FromCredits = fa, fc
	return rec, true, false, nil
}

// settleScript settles one pending decision, atomically: KEYS[1] is its
// record, KEYS[2] its settled mark, KEYS[3] the balance owner's state
// hash and KEYS[4], if present, another owner's (a team) for windows.
// ARGV: the mark's TTL (ms), credits and allowance to give back, the
// grant period start the allowance was taken from (unix ms text), extra
// to charge, unlimited (1: never charge), starting credits, the most
// credits, the number of windows, then per window its key index, limit
// name, window start (unix ms text) and amount. A record that is gone
// (settled meanwhile) changes nothing: {0}. A state hash frozen by a move
// changes nothing: {-1}. Else it returns {1, taken, allowance, credits,
// windows given back}. The allowance is never given back above the
// grant ("g") nor into another period; the credits never above the most.
var settleScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0, 0} end
local h = redis.call('HMGET', KEYS[3], 'p', 'a', 'c', 'g', 'x', 'f')
if h[6] then return {-1, 0, 0, 0, 0} end
for k = 4, #KEYS do
  if redis.call('HEXISTS', KEYS[k], 'f') == 1 then return {-1, 0, 0, 0, 0} end
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
local gc, ga, extra = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local av, cr = tonumber(h[2] or '0'), tonumber(ARGV[7])
if h[3] then cr = tonumber(h[3]) end
local changed = false
if gc > 0 then
  cr = math.min(cr + gc, tonumber(ARGV[8]))
  changed = true
end
if ga > 0 and h[1] == ARGV[4] then
  local na, g = av + ga, tonumber(h[4] or '0')
  if g and g > 0 and na > g then na = math.max(g, av) end
  if na > av then
    av = na
    changed = true
  end
end
local took = 0
if extra > 0 and ARGV[6] ~= '1' then
  took = math.min(extra, math.max(av + cr, 0))
  local fa = math.min(math.max(av, 0), took)
  av = av - fa
  cr = cr - (took - fa)
  if took > 0 then changed = true end
end
if changed then
  redis.call('HSET', KEYS[3], 'a', string.format('%d', av), 'c', string.format('%d', cr))
  if h[5] then
    redis.call('PERSIST', KEYS[3])
    redis.call('HDEL', KEYS[3], 'x')
  end
end
local wr = 0
for i = 0, tonumber(ARGV[9]) - 1 do
  local b = 10 + i * 4
  local key, lim = KEYS[tonumber(ARGV[b])], ARGV[b + 1]
  local w = redis.call('HMGET', key, 's:' .. lim, 'n:' .. lim)
  if w[1] == ARGV[b + 2] and w[2] then
    local cur = tonumber(w[2])
    if cur > 0 then
      redis.call('HSET', key, 'n:' .. lim, string.format('%d', math.max(cur - tonumber(ARGV[b + 3]), 0)))
      wr = wr + 1
    end
  end
end
return {1, took, av, cr, wr}
`)

// Settle applies p within Options.Timeout, in one script on the owner's
// slot (see settleScript).
func (s *Store) Settle(ctx context.Context, p *engine.SettlePlan) (engine.SettleResult, error) {
	if s.closed.Load() {
		return engine.SettleResult{}, ErrClosed
	}
	r := &p.Record
	keys := []string{s.pendingKey(r.ID), s.settledKey(r.ID), s.stateKey(r.Tag, r.Owner)}
	index := func(owner string) int {
		for i, k := range keys[2:] {
			if k == s.stateKey(r.Tag, owner) {
				return i + 3
			}
		}
		keys = append(keys, s.stateKey(r.Tag, owner))
		return len(keys)
	}
	unlimited := 0
	if p.Unlimited {
		unlimited = 1
	}
	args := []any{max(p.MarkTTL.Milliseconds(), 1), p.GiveCredits, p.GiveAllowance, r.GrantStart.UnixMilli(),
		p.Extra, unlimited, p.StartingCredits, engine.MaxCredits, len(p.Windows)}
	for _, w := range p.Windows {
		args = append(args, index(w.Owner), w.Limit, w.Start.UnixMilli(), w.Amount)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	vals, err := settleScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err := s.record(err, "settle "+r.ID.String()); err != nil {
		return engine.SettleResult{}, err
	}
	if len(vals) != 5 {
		return engine.SettleResult{}, fmt.Errorf("store/redis: settle %s: the script returned %d values, want 5", r.ID, len(vals))
	}
	if vals[0] == -1 {
		s.movedAway()
		return engine.SettleResult{}, fmt.Errorf("store/redis: settle %s of %q: %w", r.ID, r.Owner, ErrMoved)
	}
	return engine.SettleResult{Applied: vals[0] == 1, Took: vals[1], Allowance: vals[2], Credits: vals[3], Windows: int(vals[4])}, nil
}
