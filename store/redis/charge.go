package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/engine"
)

// chargeScript checks every counter and the balance of one request, then
// charges all of them or none.
//
// KEYS: for counter i (1-based), KEYS[2i-1] is its current window and
// KEYS[2i] its previous one (the same key again for a fixed window); the
// balance hash is KEYS[2n+1].
// ARGV: n, then per counter max, amount, weight numerator and denominator
// of the previous window (0 and 0 for a fixed one), the expiry (unix ms)
// and the lease block (0: exact); then cost, balance mode (0 none, 1
// limited, 2 unlimited), grant, grant period start (unix ms), starting
// credits and dry ("1": check and report, charge nothing). A counter
// with a block larger than its amount reserves up to the block (never past
// max) instead of the amount.
// It returns {allowed, refused index (0: none), short, allowance, credits,
// then current, previous and reserved per counter}.
var chargeScript = goredis.NewScript(`
local n = tonumber(ARGV[1])
local cur, prev = {}, {}
local refused = 0
for i = 1, n do
  local b = 1 + (i - 1) * 6
  local max, amt = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local num, den = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  cur[i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  prev[i] = 0
  if den > 0 then prev[i] = tonumber(redis.call('GET', KEYS[2 * i]) or '0') end
  local used = cur[i]
  if prev[i] > 0 and num > 0 then used = used + math.ceil(prev[i] * num / den) end
  if refused == 0 and used + amt > max then refused = i end
end
local bb = 1 + n * 6
local cost, mode, grant = tonumber(ARGV[bb + 1]), ARGV[bb + 2], tonumber(ARGV[bb + 3])
local period, start, dry = ARGV[bb + 4], tonumber(ARGV[bb + 5]), ARGV[bb + 6] == '1'
local bkey = KEYS[2 * n + 1]
local a, c, short = 0, 0, 0
if mode ~= '0' then
  local h = redis.call('HMGET', bkey, 'p', 'a', 'c')
  if h[3] then c = tonumber(h[3]) else c = start end
  if grant > 0 then
    if h[1] == period then a = tonumber(h[2]) else a = grant end
  end
  if mode == '1' and cost > 0 and a + c < cost then short = 1 end
end
local ok = 0
local took = {}
if refused == 0 and short == 0 and not dry then
  ok = 1
  for i = 1, n do
    local b = 1 + (i - 1) * 6
    local max, amt, block = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 6])
    local take = amt
    if block > amt then take = math.max(amt, math.min(block, max - cur[i])) end
    took[i] = take
    if take > 0 then
      cur[i] = redis.call('INCRBY', KEYS[2 * i - 1], string.format('%d', take))
      redis.call('PEXPIREAT', KEYS[2 * i - 1], ARGV[b + 5])
    end
  end
  if mode == '1' and cost > 0 then
    local fa = math.min(a, cost)
    a = a - fa
    c = c - (cost - fa)
    redis.call('HSET', bkey, 'p', period, 'a', string.format('%d', a), 'c', string.format('%d', c))
  end
end
local out = {ok, refused, short, a, c}
for i = 1, n do
  out[#out + 1] = cur[i]
  out[#out + 1] = prev[i]
  out[#out + 1] = took[i] or 0
end
return out
`)

// creditScript adds ARGV[1] to the credits of balance KEYS[1] unless they
// would go negative. ARGV: delta, grant, grant period start (unix ms),
// starting credits. It returns {ok, allowance, credits}.
var creditScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'p', 'a', 'c')
local c = tonumber(ARGV[4])
if h[3] then c = tonumber(h[3]) end
local a = 0
if tonumber(ARGV[2]) > 0 then
  if h[1] == ARGV[3] then a = tonumber(h[2]) else a = tonumber(ARGV[2]) end
end
local d = tonumber(ARGV[1])
if c + d < 0 then return {0, a, c} end
c = c + d
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'a', string.format('%d', a), 'c', string.format('%d', c))
return {1, a, c}
`)

// Charge executes p in one script call within Options.Timeout, or, in
// leased mode, from this replica's blocks when they cover it. An error
// means the outcome is unknown; it is never retried.
func (s *Store) Charge(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	if s.closed.Load() {
		return engine.PlanResult{}, ErrClosed
	}
	if s.leases != nil {
		return s.chargeLeased(ctx, p)
	}
	keys := s.keys(p)
	amounts := make([]int64, len(p.Counters))
	for i := range p.Counters {
		amounts[i] = p.Counters[i].Amount
	}
	r, _, err := s.run(ctx, p, keys, amounts, nil, false)
	return r, err
}

// Status reads p's counters and balance in one script call within
// Options.Timeout, charging nothing. In leased mode the counters include
// the blocks that replicas reserved and have not used yet.
func (s *Store) Status(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	if s.closed.Load() {
		return engine.PlanResult{}, ErrClosed
	}
	r, _, err := s.run(ctx, p, s.keys(p), make([]int64, len(p.Counters)), nil, true)
	return r, err
}

// keys returns the current window's key of every counter of p.
func (s *Store) keys(p *engine.Plan) []string {
	keys := make([]string, len(p.Counters))
	for i := range p.Counters {
		pc := &p.Counters[i]
		keys[i] = s.counterKey(p.Tag, pc.Owner, pc.Limit, pc.Start)
	}
	return keys
}

// run executes the script for p, with counter i's current window at
// keys[i], charging amounts[i] and reserving up to blocks[i] (nil: no
// leases), or with dry set only reading. It returns what each counter
// reserved.
func (s *Store) run(ctx context.Context, p *engine.Plan, keys []string, amounts, blocks []int64, dry bool) (engine.PlanResult, []int64, error) {
	n := len(p.Counters)
	all := make([]string, 0, 2*n+1)
	args := make([]any, 0, 1+6*n+6)
	args = append(args, n)
	now := p.Now.UnixMilli()
	for i := range p.Counters {
		pc := &p.Counters[i]
		prev, num, den := keys[i], int64(0), int64(0)
		if pc.Sliding() {
			prev = s.counterKey(p.Tag, pc.Owner, pc.Limit, pc.PrevStart)
			den = pc.End.UnixMilli() - pc.Start.UnixMilli()
			num = min(pc.End.UnixMilli()-now, den)
		}
		var block int64
		if blocks != nil {
			block = blocks[i]
		}
		all = append(all, keys[i], prev)
		args = append(args, pc.Max, amounts[i], num, den, pc.ExpireAt.Add(s.opts.ExpiryMargin).UnixMilli(), block)
	}
	b := &p.Balance
	mode, owner := 1, b.Owner
	switch {
	case b.Owner == "":
		mode, owner = 0, p.Tag
	case b.Unlimited:
		mode = 2
	}
	all = append(all, s.balanceKey(p.Tag, owner))
	drys := "0"
	if dry {
		drys = "1"
	}
	args = append(args, b.Cost, mode, b.Grant, b.PeriodStart.UnixMilli(), b.StartingCredits, drys)

	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	vals, err := chargeScript.Run(ctx, s.client, all, args...).Int64Slice()
	if err := s.record(err, "charge "+strconv.Quote(p.Tag)); err != nil {
		return engine.PlanResult{}, nil, err
	}
	if len(vals) != 5+3*n {
		return engine.PlanResult{}, nil, fmt.Errorf("store/redis: charge %q: the script returned %d values, want %d: is the server a Redis?",
			p.Tag, len(vals), 5+3*n)
	}
	r := engine.PlanResult{Allowed: vals[0] == 1, Refused: int(vals[1]) - 1, Short: vals[2] == 1,
		Allowance: vals[3], Credits: vals[4], Current: make([]int64, n), Previous: make([]int64, n)}
	took := make([]int64, n)
	for i := range n {
		r.Current[i], r.Previous[i], took[i] = vals[5+3*i], vals[6+3*i], vals[7+3*i]
	}
	return r, took, nil
}

// AddCredits adds delta to the credits of b.Owner within Options.Timeout,
// unless they would go below zero (r.OK false, nothing changed).
func (s *Store) AddCredits(ctx context.Context, tag string, b engine.PlanBalance, delta int64) (engine.CreditResult, error) {
	if s.closed.Load() {
		return engine.CreditResult{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	vals, err := creditScript.Run(ctx, s.client, []string{s.balanceKey(tag, b.Owner)},
		delta, b.Grant, b.PeriodStart.UnixMilli(), b.StartingCredits).Int64Slice()
	if err := s.record(err, "add credits to "+strconv.Quote(b.Owner)); err != nil {
		return engine.CreditResult{}, err
	}
	if len(vals) != 3 {
		return engine.CreditResult{}, fmt.Errorf("store/redis: add credits to %q: the script returned %d values, want 3", b.Owner, len(vals))
	}
	return engine.CreditResult{OK: vals[0] == 1, Allowance: vals[1], Credits: vals[2]}, nil
}
