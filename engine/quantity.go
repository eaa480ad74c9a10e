package engine

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// MaxQuantity is the largest count, limit, price, cost, allowance or credit
// balance the engine holds: 2^53 − 1 (9 007 199 254 740 991). Every such
// value lies in [0, MaxQuantity], so the sum of any two of them, or one of
// them times a percentage, fits an int64 without overflow, a Redis Lua
// script (whose numbers are doubles) computes with them exactly, and JSON
// readers that parse numbers as doubles read them exactly. Configuration
// above it is refused by Validate, a request whose units or cost would
// exceed it is refused with ReasonRequestTooLarge, and AddCredits refuses a
// delta that would take the credits past it.
const MaxQuantity int64 = 1<<53 - 1

// ErrQuantityTooLarge is wrapped by AddCredits when the credits would
// exceed MaxQuantity.
var ErrQuantityTooLarge = errors.New("engine: quantity above the largest the engine counts (2^53-1)")

// priceOf returns perCall + ceil(units × perThousand / 1000), computed in
// 128 bits, and ok == false when that exceeds MaxQuantity. A negative
// units counts as zero; perCall and perThousand are >= 0 (Validate).
func priceOf(perCall, perThousand, units int64) (cost int64, ok bool) {
	units, perCall, perThousand = max(units, 0), max(perCall, 0), max(perThousand, 0)
	hi, lo := bits.Mul64(uint64(units), uint64(perThousand))
	var carry uint64
	lo, carry = bits.Add64(lo, 999, 0)
	hi += carry
	if hi >= 1000 { // the quotient would not fit 64 bits
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, 1000)
	if q > uint64(MaxQuantity) || perCall > MaxQuantity-int64(q) {
		return 0, false
	}
	return perCall + int64(q), true
}

// addSat returns a + b, saturated at math.MaxInt64 and math.MinInt64
// instead of wrapping. It is used where a sum is only read and compared
// (a balance, a window's usage) and a value from a store or an Authority
// might be out of range: saturating up only ever refuses more.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

// fits reports whether used + amount <= limit without computing the sum,
// so that no value can overflow it. A negative used counts as zero.
func fits(used, amount, limit int64) bool {
	return amount <= limit && max(used, 0) <= limit-amount
}

// atLeastPercent reports whether part × 100 >= whole × percent, computed in
// 128 bits, for part, whole >= 0 and 0 <= percent <= 100.
func atLeastPercent(part, whole, percent int64) bool {
	if part <= 0 {
		return whole <= 0 || percent <= 0
	}
	h1, l1 := bits.Mul64(uint64(part), 100)
	h2, l2 := bits.Mul64(uint64(max(whole, 0)), uint64(max(percent, 0)))
	return h1 > h2 || (h1 == h2 && l1 >= l2)
}

// creditsTooLarge is the error of an AddCredits that would take the
// credits of key, now credits, past MaxQuantity.
func creditsTooLarge(key string, delta, credits int64) error {
	return fmt.Errorf("engine: add %d credits to %q: %w: it has %d credits, so the largest delta allowed is %d",
		delta, key, ErrQuantityTooLarge, credits, max(MaxQuantity-credits, 0))
}

// checkQuantity adds a problem to v when n, at path, is above MaxQuantity.
func checkQuantity(v *validator, path string, n int64) {
	if n > MaxQuantity {
		v.add(path, "must be at most %d (2^53-1, the largest quantity counted exactly), got %d", MaxQuantity, n)
	}
}
