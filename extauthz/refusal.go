package extauthz

import (
	"fmt"
	"strconv"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// appendBalanceRateLimit adds the RateLimit-Policy and RateLimit fields
// for a token balance, as appendRateLimit does for a window: the policy
// is the periodic grant ("tokens";q=20000;w=2592000), the state what is
// left and the seconds until the refill ("tokens";r=12;t=86400). Without a
// grant it falls back to the binding window, if any.
func appendBalanceRateLimit(h []Header, d *engine.Decision, now time.Time) []Header {
	if d.Grant <= 0 {
		return appendRateLimit(h, d, now)
	}
	p := []byte(`"tokens";q=`)
	p = strconv.AppendInt(p, d.Grant, 10)
	if w := int64(d.GrantPeriod.Every / time.Second); w > 0 {
		p = append(p, ";w="...)
		p = strconv.AppendInt(p, w, 10)
	}
	r := []byte(`"tokens";r=`)
	r = strconv.AppendInt(r, max(d.Balance, 0), 10)
	if !d.Refill.IsZero() {
		r = append(r, ";t="...)
		r = strconv.AppendInt(r, ceilSeconds(d.Refill.Sub(now)), 10)
	}
	return append(h, Header{HeaderRateLimitPolicy, string(p)}, Header{HeaderRateLimit, string(r)})
}

// windowDetail says why a window refused the request and when a retry can
// succeed, or that no reset will admit it.
func windowDetail(d *engine.Decision, now time.Time, retry int64) string {
	b := &d.Binding
	if !d.HasBinding {
		return "A limit of your plan refused the request."
	}
	if retry <= 0 {
		return fmt.Sprintf("The %q limit allows %d per %s and will not admit this request after a reset; waiting will not help.", b.Name, b.Limit, b.Period)
	}
	return fmt.Sprintf("The %q limit allows %d per %s and has %d left; this request fits again at %s, in %s. Retry then.",
		b.Name, b.Limit, b.Period, max(b.Remaining, 0), rfc3339(now.Add(time.Duration(retry)*time.Second)), humanSeconds(retry))
}

// balanceDetail says why the balance refused the request and when a retry
// can succeed: at the refill, however far ahead, or never without more
// credits.
func balanceDetail(d *engine.Decision, now time.Time, retry int64) string {
	if retry <= 0 {
		if d.Grant > 0 {
			return fmt.Sprintf("This request costs %d tokens; the balance is %d, and a refill to the grant of %d tokens plus the credits does not cover it, so waiting will not help. Add credits or upgrade your plan.", d.Cost, d.Balance, d.Grant)
		}
		return fmt.Sprintf("This request costs %d tokens and the balance is %d; the balance is not refilled, so waiting will not help. Add credits or upgrade your plan.", d.Cost, d.Balance)
	}
	at := now.Add(time.Duration(retry) * time.Second)
	if !d.Refill.IsZero() {
		at = d.Refill
	}
	return fmt.Sprintf("This request costs %d tokens and the balance is %d. The balance refills to %d tokens on %s, in %s; retry then, or add credits or upgrade your plan to go on now.",
		d.Cost, d.Balance, d.Grant, rfc3339(at), humanSeconds(retry))
}

// tooLargeDetail is the body of a request the engine found too large.
func tooLargeDetail(d *engine.Decision, id, upgrade string) tooLargeBody {
	if !d.HasBinding {
		return tooLargeBody{CodeRequestTooLarge, d.Message, "", engine.MaxQuantity, 0,
			fmt.Sprintf("This request's size or cost exceeds %d, the largest quantity quotagate counts, so it can never be admitted and waiting will not help. Send a smaller request.", engine.MaxQuantity),
			id, upgrade}
	}
	b := &d.Binding
	return tooLargeBody{CodeRequestTooLarge, d.Message, b.Name, b.Limit, d.Amount,
		fmt.Sprintf("This request counts %d against the %q limit, which allows %d per %s, so it can never fit and waiting will not help. Send a smaller request.", d.Amount, b.Name, b.Limit, b.Period),
		id, upgrade}
}

// rfc3339 formats t in UTC, or "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// humanSeconds renders a wait for people: "42 seconds", "3 hours", "12 days".
func humanSeconds(s int64) string {
	switch {
	case s < 120:
		return fmt.Sprintf("%d seconds", s)
	case s < 2*3600:
		return fmt.Sprintf("%d minutes", (s+59)/60)
	case s < 2*86400:
		return fmt.Sprintf("%d hours", (s+3599)/3600)
	}
	return fmt.Sprintf("%d days", (s+86399)/86400)
}
