package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrMoved is returned by a charge that found its subject's state moved to
// another hash tag (the subject changed team) while this replica still
// used the old one. Nothing was charged; the tier's failure mode applies
// until the replica re-reads the subject's profile, which the Store asks
// for at once.
var ErrMoved = errors.New("store/redis: the subject's state moved to another team's hash tag; this replica's profile or configuration is out of date")

// markerTTL is how long a moved hash keeps its forwarding marker (and a
// copy of what it held, so an interrupted move can be finished): longer
// than any replica keeps a stale profile (Options.ProfileTTL) or config.
const markerTTL = time.Hour

// freezeScript is step 1 of a move: it turns KEYS[1], an owner's state hash
// under its old tag, into a forwarding marker to tag ARGV[1], unless it is
// one already, and returns its fields. From then on a charge of the old
// hash is refused (ErrMoved) and charges nothing. ARGV[2] is the marker's
// life in ms, ARGV[3] names the move ("g"). It returns {status, move
// name, fields...}: status 1 froze it now, 2 it was frozen to ARGV[1]
// before (a retried move, whose name it keeps), or {3, tag} when it was
// moved to another tag.
var freezeScript = goredis.NewScript(`
local f = redis.call('HGET', KEYS[1], 'f')
if f and f ~= ARGV[1] then return {3, f} end
local st = 2
if not f then
  st = 1
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'g', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local out = {st, redis.call('HGET', KEYS[1], 'g')}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if h[i] ~= 'f' and h[i] ~= 'g' then
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
  end
end
return out
`)

// mergeScript is step 2 of a move: it adds the fields of the frozen hash
// (ARGV[3...], name and value pairs) to KEYS[1], the owner's state hash
// under its new tag, once: ARGV[1] names the move (old tag and the
// marker's expiry), and a hash that recorded it in "m" is left as it is.
// A hash that is itself a forwarding marker (the owner moved away from
// this tag before, and now back) is emptied first: what it held moved on.
// A counter of the same window is summed; a counter of another window
// keeps the later window. The balance (p, a, c) is the frozen hash's,
// unless the new hash has one of a later grant period. A hash without a
// balance expires when the later of the two would (their "x"), or at
// ARGV[2] (unix ms) when neither says. It returns 1 when it
// merged, 0 when the move was merged before.
var mergeScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'm') == ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'f') == 1 then redis.call('DEL', KEYS[1]) end
local src = {}
for i = 3, #ARGV, 2 do src[ARGV[i]] = ARGV[i + 1] end
local t = {'m', ARGV[1]}
for k, v in pairs(src) do
  local lim = string.match(k, '^s:(.*)$')
  if lim then
    local ds = redis.call('HGET', KEYS[1], k)
    local n, p = 'n:' .. lim, 'p:' .. lim
    if ds == v then
      local dn, dp = redis.call('HMGET', KEYS[1], n, p)[1], redis.call('HGET', KEYS[1], p)
      t[#t + 1] = n
      t[#t + 1] = string.format('%d', tonumber(dn or '0') + tonumber(src[n] or '0'))
      if src[p] or dp then
        t[#t + 1] = p
        t[#t + 1] = string.format('%d', tonumber(dp or '0') + tonumber(src[p] or '0'))
      end
    elseif not ds or tonumber(ds) < tonumber(v) then
      t[#t + 1] = k
      t[#t + 1] = v
      t[#t + 1] = n
      t[#t + 1] = src[n] or '0'
      if src[p] then
        t[#t + 1] = p
        t[#t + 1] = src[p]
      end
    end
  end
end
local dp = redis.call('HGET', KEYS[1], 'p')
local bal = src['c'] or src['p']
if bal and (not dp or not src['p'] or tonumber(dp) <= tonumber(src['p'])) then
  for _, k in ipairs({'p', 'a', 'c'}) do
    if src[k] then
      t[#t + 1] = k
      t[#t + 1] = src[k]
    end
  end
end
redis.call('HSET', KEYS[1], unpack(t))
if redis.call('HEXISTS', KEYS[1], 'c') == 1 or redis.call('HEXISTS', KEYS[1], 'p') == 1 then
  redis.call('PERSIST', KEYS[1])
  redis.call('HDEL', KEYS[1], 'x')
else
  local e = math.max(tonumber(redis.call('HGET', KEYS[1], 'x') or '0'), tonumber(src['x'] or '0'))
  if e == 0 then e = tonumber(ARGV[2]) end
  redis.call('HSET', KEYS[1], 'x', string.format('%d', e))
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', e))
end
return 1
`)

// MoveState moves subject's own state hash (its counters and balance)
// from hash tag from to hash tag to, when its team changes: see "Moving
// between teams" in the package doc. It is idempotent, so a move that
// failed half-way is finished by running it again, and safe against
// concurrent charges: the old hash is frozen first (charges of it fail
// with ErrMoved and charge nothing), then merged into the new one once.
// Each step is one script on one slot, within Options.SnapshotTimeout.
func (s *Store) MoveState(ctx context.Context, subject, from, to string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if from == to {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SnapshotTimeout)
	defer cancel()
	op := fmt.Sprintf("move the state of %q from tag %q to %q", subject, from, to)
	for hop := 0; ; hop++ {
		src := s.stateKey(from, subject)
		name := strconv.FormatInt(time.Now().UnixNano(), 36)
		vals, err := freezeScript.Run(ctx, s.client, []string{src}, to, markerTTL.Milliseconds(), name).Slice()
		if err := s.record(err, op+": freeze"); err != nil {
			return err
		}
		if len(vals) < 2 {
			return fmt.Errorf("store/redis: %s: freeze returned nothing", op)
		}
		if st, _ := vals[0].(int64); st == 3 {
			// Moved elsewhere before: the state lives under that tag.
			next, _ := vals[1].(string)
			if hop >= 3 || next == "" {
				return fmt.Errorf("store/redis: %s: the old hash forwards to %q, and moves chain too far", op, next)
			}
			from = next
			if from == to {
				return nil
			}
			continue
		}
		g, _ := vals[1].(string)
		args := make([]any, 0, len(vals))
		args = append(args, from+"@"+g, time.Now().Add(markerTTL).UnixMilli())
		args = append(args, vals[2:]...)
		_, err = mergeScript.Run(ctx, s.client, []string{s.stateKey(to, subject)}, args...).Result()
		return s.record(err, op+": merge")
	}
}

// movedAway makes every subject's profile be read again before its next
// request: a charge found its subject's state moved, so this replica's
// profile of it (its team) is out of date.
func (s *Store) movedAway() {
	s.prof.since.Store(time.Now().UnixNano())
}
