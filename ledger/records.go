package ledger

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Scan calls fn for every record in the ledger, oldest first, until fn
// returns false. Records are decoded from their stored content; Seq, Hash
// and PrevHash are set.
func (l *Ledger) Scan(ctx context.Context, fn func(Record) bool) error {
	return l.scanBlocks(ctx, "", nil, fn)
}

// Find returns the record with the decision (or admin) id, or ok == false.
// A UUIDv7 carries its time, so only the blocks holding records within a
// minute of it are read; a record whose time is further from its id's is
// not found. Other ids are searched for in the whole ledger.
func (l *Ledger) Find(ctx context.Context, id uuid.UUID) (rec Record, ok bool, err error) {
	var where string
	var args []any
	if id.Version() == 7 {
		sec, nsec := id.Time().UnixTime()
		t := time.Unix(sec, nsec)
		// The record's time is the decision time, which the id was made from;
		// the margin covers ids made from a slightly different clock reading.
		where = ` AND first_ns <= $2 AND last_ns >= $3`
		args = []any{t.Add(time.Minute).UnixNano(), t.Add(-time.Minute).UnixNano()}
	}
	err = l.scanBlocks(ctx, where, args, func(r Record) bool {
		if r.ID == id {
			rec, ok = r, true
			return false
		}
		return true
	})
	return rec, ok, err
}

// scanBlocks decodes the records of the blocks matching where (which
// continues "WHERE first_seq > $1" and uses $2...), oldest first.
func (l *Ledger) scanBlocks(ctx context.Context, where string, args []any, fn func(Record) bool) error {
	after := int64(0)
	for {
		rows, err := l.db.QueryContext(ctx, `SELECT first_seq, records FROM ledger_blocks WHERE first_seq > $1`+
			where+` ORDER BY first_seq LIMIT 64`, append([]any{after}, args...)...)
		if err != nil {
			return l.wrap("scan", err)
		}
		var blocks []storedBlock
		for rows.Next() {
			var b storedBlock
			var stored []byte
			if err := rows.Scan(&b.firstSeq, &stored); err != nil {
				rows.Close()
				return l.wrap("scan", err)
			}
			if b.lines, err = unpackLines(stored); err != nil {
				rows.Close()
				return l.wrap("scan", errCorrupt)
			}
			blocks = append(blocks, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return l.wrap("scan", err)
		}
		for _, b := range blocks {
			after = b.firstSeq
			for line := range strings.Lines(b.lines) {
				hash, prev, body, ok := parseLine(strings.TrimSuffix(line, "\n"))
				var r Record
				if !ok || json.Unmarshal([]byte(body), &r) != nil {
					return l.wrap("scan", errCorrupt)
				}
				r.Hash, r.PrevHash = hash, prev
				if !fn(r) {
					return nil
				}
			}
		}
		if len(blocks) < 64 {
			return nil
		}
	}
}

// ChargedByOwner returns, per balance owner (a subject or "team:<name>"),
// the tokens charged by the records still in the ledger, spill records
// included. A crash test compares it with the balances the engine kept.
func (l *Ledger) ChargedByOwner(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := l.Scan(ctx, func(r Record) bool {
		if c := r.chargedTokens(); c != 0 {
			out[r.BalanceOwner] += c
		}
		return true
	})
	return out, err
}
