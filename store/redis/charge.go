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
// credits, dry ("1": check and report, charge nothing), the balance block
// and the allowance given back. A counter with a block larger than its
// amount reserves up to the block (never past max) instead of the amount.
// A balance block larger than the cost reserves up to the block of the
// allowance (never of the credits) when the allowance covers the cost.
// The allowance given back (leased mode: what is left of this replica's
// previous block) is added back to the allowance when the request is
// admitted.
// It returns {allowed, refused index (0: none), short, allowance, credits,
// balance taken, then current, previous and reserved per counter}.
//
// The counters are read with one MGET and each written with one SET
// carrying its expiry (PXAT, Redis 6.2 or later), so a Check with two
// limits and a balance runs five commands.
var chargeScript = goredis.NewScript(`
local n = tonumber(ARGV[1])
local cur, prev = {}, {}
local refused = 0
local got = {}
if n > 0 then got = redis.call('MGET', unpack(KEYS, 1, 2 * n)) end
for i = 1, n do
  local b = 1 + (i - 1) * 6
  local max, amt = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local num, den = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  cur[i] = tonumber(got[2 * i - 1] or '0')
  prev[i] = 0
  if den > 0 then prev[i] = tonumber(got[2 * i] or '0') end
  local used = cur[i]
  if prev[i] > 0 and num > 0 then used = used + math.ceil(prev[i] * num / den) end
  if refused == 0 and used + amt > max then refused = i end
end
local bb = 1 + n * 6
local cost, mode, grant = tonumber(ARGV[bb + 1]), ARGV[bb + 2], tonumber(ARGV[bb + 3])
local period, start, dry = ARGV[bb + 4], tonumber(ARGV[bb + 5]), ARGV[bb + 6] == '1'
local bblock, give = tonumber(ARGV[bb + 7]), tonumber(ARGV[bb + 8])
local bkey = KEYS[2 * n + 1]
local a, c, short, btook = 0, 0, 0, 0
if mode ~= '0' then
  local h = redis.call('HMGET', bkey, 'p', 'a', 'c')
  if h[3] then c = tonumber(h[3]) else c = start end
  if grant > 0 then
    if h[1] == period then a = tonumber(h[2]) + give else a = grant end
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
      cur[i] = cur[i] + take
      redis.call('SET', KEYS[2 * i - 1], string.format('%d', cur[i]), 'PXAT', ARGV[b + 5])
    end
  end
  if mode == '1' and (cost > 0 or give > 0) then
    btook = cost
    if bblock > cost and a >= cost then btook = math.min(bblock, a) end
    local fa = math.min(a, btook)
    a = a - fa
    c = c - (btook - fa)
    redis.call('HSET', bkey, 'p', period, 'a', string.format('%d', a), 'c', string.format('%d', c))
  end
end
local out = {ok, refused, short, a, c, btook}
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
	a := scriptArgs{keys: s.keys(p), amounts: make([]int64, len(p.Counters)), cost: p.Balance.Cost}
	for i := range p.Counters {
		a.amounts[i] = p.Counters[i].Amount
	}
	r, _, err := s.run(ctx, p, &a)
	return r, err
}

// Status reads p's counters and balance in one script call within
// Options.Timeout, charging nothing. In leased mode the counters include
// the blocks that replicas reserved and have not used yet.
func (s *Store) Status(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	if s.closed.Load() {
		return engine.PlanResult{}, ErrClosed
	}
	a := scriptArgs{keys: s.keys(p), amounts: make([]int64, len(p.Counters)), dry: true}
	r, _, err := s.run(ctx, p, &a)
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

// scriptArgs is what one run of the charge script does with a Plan.
type scriptArgs struct {
	// keys[i] names counter i's current window; it is charged amounts[i]
	// and reserves up to blocks[i] (nil: no leases).
	keys            []string
	amounts, blocks []int64
	// cost is charged to the balance, which reserves up to bblock of its
	// allowance, and give is added back to the allowance first.
	cost, bblock, give int64
	// dry only reads.
	dry bool
}

// taken is what a run of the charge script reserved.
type taken struct {
	counters []int64 // per counter
	balance  int64
}

// run executes the charge script for p with a and returns what it
// reserved.
func (s *Store) run(ctx context.Context, p *engine.Plan, a *scriptArgs) (engine.PlanResult, taken, error) {
	n := len(p.Counters)
	all := make([]string, 0, 2*n+1)
	args := make([]any, 0, 1+6*n+8)
	args = append(args, n)
	now := p.Now.UnixMilli()
	for i := range p.Counters {
		pc := &p.Counters[i]
		prev, num, den := a.keys[i], int64(0), int64(0)
		if pc.Sliding() {
			prev = s.counterKey(p.Tag, pc.Owner, pc.Limit, pc.PrevStart)
			den = pc.End.UnixMilli() - pc.Start.UnixMilli()
			num = min(pc.End.UnixMilli()-now, den)
		}
		var block int64
		if a.blocks != nil {
			block = a.blocks[i]
		}
		all = append(all, a.keys[i], prev)
		args = append(args, pc.Max, a.amounts[i], num, den, pc.ExpireAt.Add(s.opts.ExpiryMargin).UnixMilli(), block)
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
	if a.dry {
		drys = "1"
	}
	args = append(args, a.cost, mode, b.Grant, b.PeriodStart.UnixMilli(), b.StartingCredits, drys, a.bblock, a.give)

	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	c := &call{keys: all, args: args}
	if err := s.batch.do(ctx, c); err != nil {
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: %w", p.Tag, err)
	}
	vals := c.vals // only once do succeeded: an abandoned call is written late
	if len(vals) != 6+3*n {
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: the script returned %d values, want %d: is the server a Redis 6.2 or later?",
			p.Tag, len(vals), 6+3*n)
	}
	r := engine.PlanResult{Allowed: vals[0] == 1, Refused: int(vals[1]) - 1, Short: vals[2] == 1,
		Allowance: vals[3], Credits: vals[4], Current: make([]int64, n), Previous: make([]int64, n)}
	t := taken{counters: make([]int64, n), balance: vals[5]}
	for i := range n {
		r.Current[i], r.Previous[i], t.counters[i] = vals[6+3*i], vals[7+3*i], vals[8+3*i]
	}
	return r, t, nil
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
