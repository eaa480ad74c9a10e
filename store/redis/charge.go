package redis

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/quotagate/quotagate/engine"
)

// chargeScript checks every counter and the balance of one request, then
// charges all of them or none.
//
// KEYS are the state hashes of the request's owners (the subject, its
// team), each key once. ARGV[1] is the rest, MessagePack-encoded (Redis's
// bundled cmsgpack decodes it in C, so no number is parsed from text): the
// number of counters n, dry (1: check and report, charge nothing), the
// balance's key index (0: no balance), mode (1 limited, 2 unlimited),
// cost, grant, grant period start (unix ms, as text), starting credits,
// the balance block and the allowance given back; then per key the time
// its hash may expire (unix ms; 0: never); then per counter its key's
// index, the limit's name, the window's start and the start of the window
// before (unix ms as text; "" for a fixed window), the previous window's
// weight as numerator and denominator (0 and 0 for a fixed window), max,
// amount and the lease block (0: exact). A counter with a block larger
// than its amount reserves up to the block (never past max) instead of the
// amount. A balance block larger than the cost reserves up to the block
// of the allowance (never of the credits) when the allowance covers the
// cost. The allowance given back (leased mode: what is left of this
// replica's previous block) is added back to the allowance when the
// request is admitted.
// ARGV[2], when present, is a pending decision (engine.PlanPending) to
// record in the hash KEYS[#KEYS] if the request is admitted, with the
// part of its cost (ARGV[4], what blocks covered included) taken from the
// allowance and from the credits, expiring after ARGV[3] ms.
// It returns {allowed, refused index (0: none), short, allowance, credits,
// balance taken, then current, previous and reserved per counter}, or
// {-1, k} and changes nothing when KEYS[k] holds a forwarding marker "f":
// its owner's state moved to another hash tag (see moveScript).
//
// In a state hash, limit L's counter is the fields "s:L", the start of the
// window it counts, "n:L", its count, and for a sliding window "p:L", the
// count of the window before. A window that rolled is noticed by its
// start, so the fields are reused and never pile up. The balance is "p"
// (grant period start), "a" (allowance left) and "c" (credits). A hash
// without a balance expires when its last window does (plus the margin),
// and "x" records that time so the expiry is only moved when it grows; a
// hash with a balance never expires. So a Check reads each hash with one
// HMGET and writes it with one HSET of the fields that changed. The
// script makes as few Lua tables as it can: on this path they cost more
// than the Redis commands.
var chargeScript = goredis.NewScript(`
local a = cmsgpack.unpack(ARGV[1])
local n, nk = a[1], #KEYS
if ARGV[2] then nk = nk - 1 end
local bk, mode, cost, grant = a[3], a[4], a[5], a[6]
local period, start, bblock, give = a[7], a[8], a[9], a[10]
local C = 11 + nk
local out = {0, 0, 0, 0, 0, 0}
local got = {}
for k = 1, nk do
  local f = {'c', 'x', 'f'}
  for i = 1, n do
    local b = C + (i - 1) * 9
    if a[b] == k then
      local lim = a[b + 1]
      f[#f + 1] = 's:' .. lim
      f[#f + 1] = 'n:' .. lim
      if a[b + 5] > 0 then f[#f + 1] = 'p:' .. lim end
    end
  end
  if k == bk then
    f[#f + 1] = 'p'
    f[#f + 1] = 'a'
    f[#f + 1] = 'g'
  end
  got[k] = redis.call('HMGET', KEYS[k], unpack(f))
  if got[k][3] then return {-1, k} end
end
local refused = 0
for k = 1, nk do
  local g, j = got[k], 4
  for i = 1, n do
    local b = C + (i - 1) * 9
    if a[b] == k then
      local s, den, cur, prev = g[j], a[b + 5], 0, 0
      if s == a[b + 2] then
        cur = tonumber(g[j + 1] or '0')
        if den > 0 then prev = tonumber(g[j + 2] or '0') end
      elseif den > 0 and s == a[b + 3] then
        prev = tonumber(g[j + 1] or '0')
      end
      local used = cur
      if prev > 0 and a[b + 4] > 0 then used = used + math.ceil(prev * a[b + 4] / den) end
      if refused == 0 and used + a[b + 7] > a[b + 6] then refused = i end
      local o = 4 + 3 * i
      out[o], out[o + 1], out[o + 2] = cur, prev, 0
      j = j + 2
      if den > 0 then j = j + 1 end
    end
  end
end
local av, cr, short, hp, hc, hg = 0, 0, 0, false, false, false
local rfa, rfc = 0, 0
local gs = string.format('%d', grant)
if bk > 0 then
  local g = got[bk]
  local m = #g
  hp, hc, hg = g[m - 2], g[1], g[m]
  if hc then cr = tonumber(hc) else cr = start end
  if grant > 0 then
    if hp == period then
      av = tonumber(g[m - 1])
      local was = tonumber(hg)
      if was and was > 0 and was ~= grant then
        local spent = math.max(was - av, 0)
        av = math.min(math.max(grant - spent, 0), grant)
      end
      av = av + give
    else
      av = grant
    end
  end
  if mode == 1 and cost > 0 and av + cr < cost then short = 1 end
end
if refused == 0 and short == 0 and a[2] == 0 then
  out[1] = 1
  local pay, ncr = mode == 1 and (cost > 0 or give > 0), cr
  if pay then
    local took = cost
    if bblock > cost and av >= cost then took = math.min(bblock, av) end
    local fa = math.min(av, took)
    av = av - fa
    ncr = cr - (took - fa)
    out[6] = took
    rfa = math.min(fa, cost)
    rfc = cost - rfa
  end
  for k = 1, nk do
    local g, j, t = got[k], 4, {}
    for i = 1, n do
      local b = C + (i - 1) * 9
      if a[b] == k then
        local o, lim, moved = 4 + 3 * i, a[b + 1], g[j] ~= a[b + 2]
        local amt, block = a[b + 7], a[b + 8]
        local take = amt
        if block > amt then take = math.max(amt, math.min(block, a[b + 6] - out[o])) end
        out[o + 2] = take
        if take > 0 then
          out[o] = out[o] + take
          t[#t + 1] = 'n:' .. lim
          t[#t + 1] = string.format('%d', out[o])
          if moved then
            t[#t + 1] = 's:' .. lim
            t[#t + 1] = a[b + 2]
            if a[b + 5] > 0 then
              t[#t + 1] = 'p:' .. lim
              t[#t + 1] = string.format('%d', out[o + 1])
            end
          end
        end
        j = j + 2
        if a[b + 5] > 0 then j = j + 1 end
      end
    end
    local paid = pay and k == bk
    if paid then
      t[#t + 1] = 'a'
      t[#t + 1] = string.format('%d', av)
      if hp ~= period then
        t[#t + 1] = 'p'
        t[#t + 1] = period
      end
      if hg ~= gs then
        t[#t + 1] = 'g'
        t[#t + 1] = gs
      end
      if ncr ~= cr or not hc then
        t[#t + 1] = 'c'
        t[#t + 1] = string.format('%d', ncr)
      end
    end
    if #t > 0 then
      local x, e = g[2], a[10 + k]
      if g[1] or paid then
        if x then
          redis.call('PERSIST', KEYS[k])
          redis.call('HDEL', KEYS[k], 'x')
        end
        redis.call('HSET', KEYS[k], unpack(t))
      elseif e > 0 and (not x or tonumber(x) < e) then
        local es = string.format('%d', e)
        t[#t + 1] = 'x'
        t[#t + 1] = es
        redis.call('HSET', KEYS[k], unpack(t))
        redis.call('PEXPIREAT', KEYS[k], es)
      else
        redis.call('HSET', KEYS[k], unpack(t))
      end
    end
  end
  cr = ncr
  if ARGV[2] then
    if mode == 1 then rfa = rfa + tonumber(ARGV[4]) - cost end
    local pk = KEYS[nk + 1]
    redis.call('HSET', pk, 'r', ARGV[2], 'fa', string.format('%d', rfa), 'fc', string.format('%d', rfc))
    redis.call('PEXPIRE', pk, ARGV[3])
  end
end
out[2], out[3], out[4], out[5] = refused, short, av, cr
return out
`)

// creditScript adds ARGV[1] to the credits of the balance in state hash
// KEYS[1] unless they would go negative (ok 0) or above ARGV[5], the most
// credits allowed (ok 2). ARGV: delta, grant, grant period start (unix
// ms), starting credits, the most credits. It returns {ok, allowance,
// credits}. A grant that differs from "g", the grant the allowance was
// measured against, applies at once, less what was spent this period (as
// in chargeScript).
// A hash with a balance never expires, so the expiry of one that held
// only counters until now is dropped.
var creditScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'p', 'a', 'c', 'x', 'g', 'f')
if h[6] then return {-1, 0, 0} end
local c = tonumber(ARGV[4])
if h[3] then c = tonumber(h[3]) end
local a = 0
local grant = tonumber(ARGV[2])
if grant > 0 then
  if h[1] == ARGV[3] then
    a = tonumber(h[2])
    local was = tonumber(h[5])
    if was and was > 0 and was ~= grant then
      a = math.min(math.max(grant - math.max(was - a, 0), 0), grant)
    end
  else
    a = grant
  end
end
local d = tonumber(ARGV[1])
if c + d < 0 then return {0, a, c} end
if d > 0 and c + d > tonumber(ARGV[5]) then return {2, a, c} end
c = c + d
redis.call('HSET', KEYS[1], 'p', ARGV[3], 'a', string.format('%d', a), 'c', string.format('%d', c), 'g', ARGV[2])
if h[4] then
  redis.call('PERSIST', KEYS[1])
  redis.call('HDEL', KEYS[1], 'x')
end
return {1, a, c}
`)

// Charge executes p in one script call within Options.Timeout, or, in
// leased mode, from this replica's blocks when they cover it. An error
// means the outcome is unknown; it is never retried.
func (s *Store) Charge(ctx context.Context, p *engine.Plan) (engine.PlanResult, error) {
	if s.closed.Load() {
		return engine.PlanResult{}, ErrClosed
	}
	if p.Pending != nil {
		p.Pending.Record.ID = s.pendingID(p.Tag, p.Pending.Record.ID)
	}
	if s.leases != nil {
		return s.chargeLeased(ctx, p)
	}
	a := scriptArgs{amounts: make([]int64, len(p.Counters)), cost: p.Balance.Cost}
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
	a := scriptArgs{amounts: make([]int64, len(p.Counters)), dry: true}
	r, _, err := s.run(ctx, p, &a)
	return r, err
}

// windowIDs returns, for every counter of p, the name of its current
// window, which identifies its block in leased mode.
func windowIDs(p *engine.Plan) []string {
	ids := make([]string, len(p.Counters))
	for i := range p.Counters {
		pc := &p.Counters[i]
		ids[i] = windowID(p.Tag, pc.Owner, pc.Limit, pc.Start)
	}
	return ids
}

// scriptArgs is what one run of the charge script does with a Plan.
type scriptArgs struct {
	// Counter i is charged amounts[i] and reserves up to blocks[i] (nil:
	// no leases); in leased mode keys[i] names its window (windowIDs).
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
	keys, arg, err := s.encodeRun(p, a)
	if err != nil {
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: encode: %w", p.Tag, err)
	}
	c := &call{keys: keys, args: []any{arg}}
	if p.Pending != nil && !a.dry {
		rec, err := encodePending(&p.Pending.Record)
		if err != nil {
			return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: %w", p.Tag, err)
		}
		c.keys = append(c.keys, s.pendingKey(p.Pending.Record.ID))
		c.args = append(c.args, rec, max(p.Pending.TTL.Milliseconds(), 1), p.Balance.Cost)
	}
	if err := s.batch.do(ctx, c, s.opts.Timeout); err != nil {
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: %w", p.Tag, err)
	}
	vals := c.vals // only once do succeeded: an abandoned call is written late
	if len(vals) == 2 && vals[0] == -1 {
		s.movedAway()
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: %w", p.Tag, ErrMoved)
	}
	if len(vals) != 6+3*n {
		return engine.PlanResult{}, taken{}, fmt.Errorf("store/redis: charge %q: the script returned %d values, want %d",
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

// encodeRun returns the keys of the charge script for p with a (each
// owner's state hash once) and its argument, as chargeScript documents.
func (s *Store) encodeRun(p *engine.Plan, a *scriptArgs) ([]string, []byte, error) {
	n := len(p.Counters)
	var owners [4]string // most plans have one owner, a team member's two
	keyOf := make([]int64, n)
	nk := 0
	index := func(owner string) int64 {
		for i := range nk {
			if owners[i] == owner {
				return int64(i + 1)
			}
		}
		if nk == len(owners) {
			return -1
		}
		owners[nk] = owner
		nk++
		return int64(nk)
	}
	for i := range p.Counters {
		keyOf[i] = index(p.Counters[i].Owner)
	}
	b := &p.Balance
	var bk, mode int64
	if b.Owner != "" {
		bk, mode = index(b.Owner), 1
		if b.Unlimited {
			mode = 2
		}
	}
	if bk < 0 || slices.Contains(keyOf, -1) {
		return nil, nil, fmt.Errorf("a plan has more than %d owners", len(owners))
	}
	expire := make([]int64, nk)
	for i := range p.Counters {
		pc := &p.Counters[i]
		expire[keyOf[i]-1] = max(expire[keyOf[i]-1], pc.ExpireAt.Add(s.opts.ExpiryMargin).UnixMilli())
	}

	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.reset()
	dry := int64(0)
	if a.dry {
		dry = 1
	}
	err := e.enc.EncodeArrayLen(10 + nk + 9*n)
	e.ints(&err, int64(n), dry, bk, mode, a.cost, b.Grant)
	e.msText(&err, b.PeriodStart.UnixMilli())
	e.ints(&err, b.StartingCredits, a.bblock, a.give)
	e.ints(&err, expire...)
	now := p.Now.UnixMilli()
	for i := range p.Counters {
		pc := &p.Counters[i]
		var num, den int64
		e.ints(&err, keyOf[i])
		e.str(&err, pc.Limit)
		e.msText(&err, pc.Start.UnixMilli())
		if pc.Sliding() {
			e.msText(&err, pc.PrevStart.UnixMilli())
			den = pc.End.UnixMilli() - pc.Start.UnixMilli()
			num = min(pc.End.UnixMilli()-now, den)
		} else {
			e.str(&err, "")
		}
		var block int64
		if a.blocks != nil {
			block = a.blocks[i]
		}
		e.ints(&err, num, den, pc.Max, a.amounts[i], block)
	}
	if err != nil {
		return nil, nil, err
	}
	keys := make([]string, nk)
	for i := range keys {
		keys[i] = s.stateKey(p.Tag, owners[i])
	}
	return keys, bytes.Clone(e.buf.Bytes()), nil
}

// encoder writes the charge script's argument; encoders reuses them.
type encoder struct {
	buf  bytes.Buffer
	enc  *msgpack.Encoder
	text [20]byte
}

var encoders = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

func (e *encoder) reset() { e.buf.Reset() }

// ints encodes each of vs, unless *err is set already, and keeps the
// first error in *err.
func (e *encoder) ints(err *error, vs ...int64) {
	for _, v := range vs {
		if *err == nil {
			*err = e.enc.EncodeInt(v)
		}
	}
}

func (e *encoder) str(err *error, v string) {
	if *err == nil {
		*err = e.enc.EncodeString(v)
	}
}

// msText encodes the unix ms ms as decimal text, which the script
// compares with the text it stored. The text is at most 20 bytes, so it is
// a MessagePack fixstr (0xa0 | length, then the bytes), written straight
// to the buffer the encoder writes to: EncodeBytes would make a bin, which
// Redis's cmsgpack does not decode, and EncodeString a copy.
func (e *encoder) msText(err *error, ms int64) {
	if *err == nil {
		t := strconv.AppendInt(e.text[:0], ms, 10)
		e.buf.WriteByte(0xa0 | byte(len(t)))
		e.buf.Write(t)
	}
}

// AddCredits adds delta to the credits of b.Owner within Options.Timeout,
// unless they would go below zero or above engine.MaxCredits (r.OK false,
// nothing changed).
func (s *Store) AddCredits(ctx context.Context, tag string, b engine.PlanBalance, delta int64) (engine.CreditResult, error) {
	if s.closed.Load() {
		return engine.CreditResult{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	vals, err := creditScript.Run(ctx, s.client, []string{s.stateKey(tag, b.Owner)},
		delta, b.Grant, b.PeriodStart.UnixMilli(), b.StartingCredits, engine.MaxCredits).Int64Slice()
	if err := s.record(err, "add credits to "+strconv.Quote(b.Owner)); err != nil {
		return engine.CreditResult{}, err
	}
	if len(vals) != 3 {
		return engine.CreditResult{}, fmt.Errorf("store/redis: add credits to %q: the script returned %d values, want 3", b.Owner, len(vals))
	}
	if vals[0] == -1 {
		s.movedAway()
		return engine.CreditResult{}, fmt.Errorf("store/redis: add credits to %q under tag %q: %w", b.Owner, tag, ErrMoved)
	}
	return engine.CreditResult{OK: vals[0] == 1, Capped: vals[0] == 2, Allowance: vals[1], Credits: vals[2]}, nil
}
