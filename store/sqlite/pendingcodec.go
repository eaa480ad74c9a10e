package sqlite

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

// A pending row's data is either JSON (the first format, starting with
// '{', still read) or the compact binary format written now, about a
// fifth of its size, which starts with its format byte:
//
//	pendingFormatBinary
//	byte    state (engine.PendingState)
//	byte    flags: bit 0 GrantStart set, 1 Owner is Subject (and is
//	        not repeated), 2 Trace set
//	varint  DecidedAt, Expires, then GrantStart when set: Unix nanoseconds
//	string  Tag, Subject, Team, Owner (unless bit 1), Tier, Action,
//	        Workflow: each a uvarint length and the bytes
//	varint  Units, Charged, FromAllowance, FromCredits
//	uvarint window count, then per window: string Owner, string Limit,
//	        byte 1 when Start is set (then varint Start), varint Amount
//	[16]byte trace id, [8]byte span id, byte sampled (when bit 2)
//
// The record's id is the row's key and is not repeated. Times are read
// back in UTC.
const pendingFormatBinary = 0x01

const (
	pendingGrantStart = 1 << iota
	pendingOwnerIsSubject
	pendingTrace
)

// appendPending appends r in the binary format to b.
func appendPending(b []byte, r *engine.PendingRecord) []byte {
	var flags byte
	if !r.GrantStart.IsZero() {
		flags |= pendingGrantStart
	}
	if r.Owner == r.Subject {
		flags |= pendingOwnerIsSubject
	}
	if r.Trace != (engine.TraceRef{}) {
		flags |= pendingTrace
	}
	b = append(b, pendingFormatBinary, byte(r.State), flags)
	b = appendTime(b, r.DecidedAt)
	b = appendTime(b, r.Expires)
	if flags&pendingGrantStart != 0 {
		b = appendTime(b, r.GrantStart)
	}
	b = appendString(b, r.Tag)
	b = appendString(b, r.Subject)
	b = appendString(b, r.Team)
	if flags&pendingOwnerIsSubject == 0 {
		b = appendString(b, r.Owner)
	}
	b = appendString(b, string(r.Tier))
	b = appendString(b, r.Action)
	b = appendString(b, r.Workflow)
	for _, v := range [...]int64{r.Units, r.Charged, r.FromAllowance, r.FromCredits} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Windows)))
	for i := range r.Windows {
		w := &r.Windows[i]
		b = appendString(b, w.Owner)
		b = appendString(b, w.Limit)
		if w.Start.IsZero() {
			b = append(b, 0)
		} else {
			b = appendTime(append(b, 1), w.Start)
		}
		b = binary.AppendVarint(b, w.Amount)
	}
	if flags&pendingTrace != 0 {
		b = append(b, r.Trace.TraceID[:]...)
		b = append(b, r.Trace.SpanID[:]...)
		sampled := byte(0)
		if r.Trace.Sampled {
			sampled = 1
		}
		b = append(b, sampled)
	}
	return b
}

// appendTime appends t as varint Unix nanoseconds. Every time of a
// pending record fits: the engine keeps them as Unix nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendVarint(b, t.UnixNano())
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBytes(b, p []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(p))), p...)
}

// decodePending decodes a pending row: id is its key, data its data in
// either format. A row that does not decode, or whose JSON names another
// id, is an error.
func decodePending(id, data []byte) (engine.PendingRecord, error) {
	var r engine.PendingRecord
	if len(id) != len(r.ID) {
		return r, fmt.Errorf("the id is %d bytes, want %d", len(id), len(r.ID))
	}
	if len(data) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, &r); err != nil {
			return r, err
		}
		if r.ID != uuid.UUID(id) {
			return r, fmt.Errorf("the record's id is %s", r.ID)
		}
		return r, nil
	}
	if len(data) == 0 || data[0] != pendingFormatBinary {
		return r, fmt.Errorf("unknown pending record format")
	}
	r.ID = uuid.UUID(id)
	d := decoder{b: data[1:]}
	r.State = engine.PendingState(d.byte())
	flags := d.byte()
	r.DecidedAt, r.Expires = d.time(), d.time()
	if flags&pendingGrantStart != 0 {
		r.GrantStart = d.time()
	}
	r.Tag, r.Subject, r.Team = d.string(), d.string(), d.string()
	r.Owner = r.Subject
	if flags&pendingOwnerIsSubject == 0 {
		r.Owner = d.string()
	}
	r.Tier, r.Action, r.Workflow = engine.Tier(d.string()), d.string(), d.string()
	r.Units, r.Charged, r.FromAllowance, r.FromCredits = d.varint(), d.varint(), d.varint(), d.varint()
	if n := d.count(); n > 0 {
		r.Windows = make([]engine.PendingWindow, n)
	}
	for i := range r.Windows {
		w := &r.Windows[i]
		w.Owner, w.Limit = d.string(), d.string()
		if d.byte() != 0 {
			w.Start = d.time()
		}
		w.Amount = d.varint()
	}
	if flags&pendingTrace != 0 {
		copy(r.Trace.TraceID[:], d.fixed(len(r.Trace.TraceID)))
		copy(r.Trace.SpanID[:], d.fixed(len(r.Trace.SpanID)))
		r.Trace.Sampled = d.byte() != 0
	}
	if d.err == nil && len(d.b) > 0 {
		return r, fmt.Errorf("%d bytes after the record", len(d.b))
	}
	return r, d.err
}

// time reads what appendTime wrote, in UTC.
func (d *decoder) time() time.Time { return time.Unix(0, d.varint()).UTC() }

// fixed reads n bytes.
func (d *decoder) fixed(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
