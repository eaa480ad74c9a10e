package ledger

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// appendRecord appends r as JSON, the same document encoding/json would
// produce from r's field tags (decoding it with encoding/json gives r
// back), without reflection: the batcher encodes every record, and this
// is several times cheaper.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"id":"`...)
	b = appendUUID(b, r)
	b = append(b, `","time":`...)
	b = appendTime(b, r.Time)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(r.Kind))
	b = appendStringField(b, "subject", r.Subject)
	b = appendStringField(b, "team", r.Team)
	b = appendStringField(b, "tier", r.Tier)
	b = appendStringField(b, "action", r.Action)
	b = appendStringField(b, "workflow", r.Workflow)
	b = appendIntField(b, "units", r.Units)
	b = appendIntField(b, "cost", r.Cost)
	b = appendIntField(b, "charged", r.Charged)
	if len(r.Limits) > 0 {
		b = append(b, `,"limits":[`...)
		for i := range r.Limits {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendLimit(b, &r.Limits[i])
		}
		b = append(b, ']')
	}
	b = appendIntField(b, "balance", r.Balance)
	if r.HasBalance {
		b = append(b, `,"has_balance":true`...)
	}
	b = appendStringField(b, "balance_owner", r.BalanceOwner)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, r.Allowed)
	b = appendStringField(b, "reason", r.Reason)
	b = appendStringField(b, "trace_id", r.TraceID)
	if r.Admin != nil {
		b = appendAdmin(b, r.Admin)
	}
	if r.Spill != nil {
		b = appendSpill(b, r.Spill)
	}
	if r.Settlement != nil {
		b = appendSettlement(b, r.Settlement)
	}
	return append(b, '}')
}

func appendSettlement(b []byte, s *Settlement) []byte {
	b = append(b, `,"settlement":{"settles":"`...)
	b = appendID(b, s.Settles)
	b = append(b, `","decided_at":`...)
	b = appendTime(b, s.DecidedAt)
	b = append(b, `,"outcome":`...)
	b = appendString(b, s.Outcome)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(s.Status), 10)
	b = append(b, `,"charged":`...)
	b = strconv.AppendInt(b, s.Charged, 10)
	b = appendIntField(b, "actual_units", s.ActualUnits)
	b = appendIntField(b, "refunded", s.Refunded)
	b = appendIntField(b, "extra", s.Extra)
	b = appendIntField(b, "owed", s.Owed)
	if s.WindowsRefunded {
		b = append(b, `,"windows_refunded":true`...)
	}
	return append(b, '}')
}

func appendAdmin(b []byte, a *AdminChange) []byte {
	b = append(b, `,"admin":{"actor":`...)
	b = appendString(b, a.Actor)
	b = append(b, `,"what":`...)
	b = appendString(b, a.What)
	b = append(b, `,"before":`...)
	b = appendString(b, a.Before)
	b = append(b, `,"after":`...)
	b = appendString(b, a.After)
	return append(b, '}')
}

func appendSpill(b []byte, s *Spill) []byte {
	b = append(b, `,"spill":{"records":`...)
	b = strconv.AppendInt(b, s.Records, 10)
	b = append(b, `,"calls":`...)
	b = strconv.AppendInt(b, s.Calls, 10)
	b = append(b, `,"units":`...)
	b = strconv.AppendInt(b, s.Units, 10)
	b = append(b, `,"tokens":`...)
	b = strconv.AppendInt(b, s.Tokens, 10)
	b = append(b, `,"rejections":`...)
	b = strconv.AppendInt(b, s.Rejections, 10)
	b = appendIntField(b, "refunded", s.Refunded)
	b = appendIntField(b, "extra", s.Extra)
	b = appendIntField(b, "owed", s.Owed)
	b = append(b, `,"first":`...)
	b = appendTime(b, s.First)
	b = append(b, `,"last":`...)
	b = appendTime(b, s.Last)
	return append(b, '}')
}

func appendLimit(b []byte, l *LimitCharge) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, l.Name)
	b = append(b, `,"period":`...)
	b = appendString(b, l.Period)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, l.Limit, 10)
	b = append(b, `,"used":`...)
	b = strconv.AppendInt(b, l.Used, 10)
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, l.Remaining, 10)
	b = append(b, `,"reset":`...)
	b = appendTime(b, l.Reset)
	return append(b, '}')
}

func appendUUID(b []byte, r *Record) []byte { return appendID(b, r.ID) }

// appendID appends id in its canonical 36-byte form.
func appendID(b []byte, id uuid.UUID) []byte {
	var buf [36]byte
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			buf[j] = '-'
			j++
		}
		buf[j], buf[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return append(b, buf[:]...)
}

// appendTime writes t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendStringField writes ,"name":"s", or nothing when s is empty
// (omitempty).
func appendStringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, s)
}

// appendIntField writes ,"name":n, or nothing when n is 0 (omitempty).
func appendIntField(b []byte, name string, n int64) []byte {
	if n == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

// appendString writes s as a JSON string. Control characters, quotes and
// backslashes are escaped; invalid UTF-8 becomes U+FFFD, as in
// encoding/json, so the text always decodes to the same value.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
