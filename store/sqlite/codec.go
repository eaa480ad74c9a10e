package sqlite

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// A snapshot row's data is either JSON (the first format, starting with
// '{', still read) or the compact binary format written now, which
// starts with its format byte:
//
//	formatBinaryEnd (or formatBinaryGrant, formatBinary)
//	uvarint version
//	varint  allowance, credits
//	byte    which times are set (bit 0 allowance period, 1 balance
//	        alerted, 2 balance refused), then a varint Unix nanoseconds
//	        for each set one, in that order
//	uvarint window count, then per window:
//	        uvarint name length, name,
//	        byte flags (bit 0 start set, 1 warned, 2 breached),
//	        varint start (when set), current, previous, next
//	uvarint profile length, then the profile as JSON (0 for none:
//	        profiles are rare run-time overrides)
//	varint  grant the allowance was measured against (engine
//	        Snapshot.Grant), not in formatBinary
//	varint  Unix nanoseconds of the allowance period's end (engine
//	        Snapshot.AllowanceEnd; 0 for none), in formatBinaryEnd only
//
// formatBinary (0x01) rows, written by older builds, have no grant and
// are read with Grant 0 (not known); formatBinaryGrant (0x02) rows have
// no period end and are read with a zero AllowanceEnd (not known);
// formatBinaryEnd (0x03) is written now.
// The key is the row's key and is not repeated.
const (
	formatBinary      = 0x01
	formatBinaryGrant = 0x02
	formatBinaryEnd   = 0x03
)

var errShort = errors.New("truncated snapshot")

const (
	timeAllowancePeriod = 1 << iota
	timeBalanceAlerted
	timeBalanceRefused
)

const (
	windowStart = 1 << iota
	windowWarned
	windowBreached
)

// appendSnapshot appends s in the binary format to b.
func appendSnapshot(b []byte, s *engine.Snapshot) ([]byte, error) {
	b = append(b, formatBinaryEnd)
	b = binary.AppendUvarint(b, s.Version)
	b = binary.AppendVarint(b, s.Allowance)
	b = binary.AppendVarint(b, s.Credits)
	times := [...]time.Time{s.AllowancePeriod, s.BalanceAlerted, s.BalanceRefused}
	var set byte
	for i, t := range times {
		if !t.IsZero() {
			set |= 1 << i
		}
	}
	b = append(b, set)
	for _, t := range times {
		if !t.IsZero() {
			b = binary.AppendVarint(b, t.UnixNano())
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.Windows)))
	for i := range s.Windows {
		b = appendWindow(b, &s.Windows[i])
	}
	if isZeroProfile(&s.Profile) {
		b = append(b, 0)
	} else {
		p, err := json.Marshal(s.Profile)
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	b = binary.AppendVarint(b, s.Grant)
	var end int64
	if !s.AllowanceEnd.IsZero() {
		end = s.AllowanceEnd.UnixNano()
	}
	return binary.AppendVarint(b, end), nil
}

func appendWindow(b []byte, w *engine.WindowSnapshot) []byte {
	b = binary.AppendUvarint(b, uint64(len(w.Name)))
	b = append(b, w.Name...)
	var flags byte
	if !w.Start.IsZero() {
		flags |= windowStart
	}
	if w.Warned {
		flags |= windowWarned
	}
	if w.Breached {
		flags |= windowBreached
	}
	b = append(b, flags)
	if flags&windowStart != 0 {
		b = binary.AppendVarint(b, w.Start.UnixNano())
	}
	b = binary.AppendVarint(b, w.Current)
	b = binary.AppendVarint(b, w.Previous)
	return binary.AppendVarint(b, w.Next)
}

func isZeroProfile(p *engine.Profile) bool {
	return p.Tier == "" && p.Team == "" && len(p.Roles) == 0 && len(p.Limits) == 0
}

// decodeSnapshot decodes a row's data, in either format.
func decodeSnapshot(data []byte) (engine.Snapshot, error) {
	var s engine.Snapshot
	if len(data) > 0 && data[0] == '{' {
		err := json.Unmarshal(data, &s)
		return s, err
	}
	if len(data) == 0 || data[0] < formatBinary || data[0] > formatBinaryEnd {
		return s, fmt.Errorf("unknown snapshot format")
	}
	d := decoder{b: data[1:]}
	s.Version = d.uvarint()
	s.Allowance = d.varint()
	s.Credits = d.varint()
	set := d.byte()
	for i, t := range [...]*time.Time{&s.AllowancePeriod, &s.BalanceAlerted, &s.BalanceRefused} {
		if set&(1<<i) != 0 {
			*t = time.Unix(0, d.varint())
		}
	}
	if n := d.count(); n > 0 {
		s.Windows = make([]engine.WindowSnapshot, n)
	}
	for i := range s.Windows {
		w := &s.Windows[i]
		w.Name = d.string()
		flags := d.byte()
		if flags&windowStart != 0 {
			w.Start = time.Unix(0, d.varint())
		}
		w.Current, w.Previous, w.Next = d.varint(), d.varint(), d.varint()
		w.Warned, w.Breached = flags&windowWarned != 0, flags&windowBreached != 0
	}
	if p := d.bytes(); len(p) > 0 && d.err == nil {
		if err := json.Unmarshal(p, &s.Profile); err != nil {
			return s, fmt.Errorf("profile: %w", err)
		}
	}
	if data[0] >= formatBinaryGrant {
		s.Grant = d.varint()
	}
	if data[0] >= formatBinaryEnd {
		if end := d.varint(); end != 0 {
			s.AllowanceEnd = time.Unix(0, end)
		}
	}
	return s, d.err
}

// decoder reads the binary format; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errShort
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads what binary.AppendVarint wrote: a zigzag-encoded uvarint.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads the number of items that follow, each at least one byte
// long: a count larger than the bytes left is an error, not an
// allocation.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string { return string(d.bytes()) }
