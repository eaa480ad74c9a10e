package ledger

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// In SQLite a block's lines are stored compressed with S2 (a Snappy
// extension that compresses at gigabytes a second): the records are JSON
// with the same keys and values over and over, and come out about four
// times smaller. Every byte appended is written twice, to the WAL and
// again at checkpoint, so this cuts the ledger's disk writes, and the
// file's growth, by about as much, for about a tenth of the CPU that
// writing them cost. Such a block is a BLOB starting with packedBlock;
// blocks written as text (lines start with a hash's hex digit), by
// earlier versions or by PostgreSQL, whose TEXT column holds no bytes
// like that, are read as they are.
const packedBlock = 0x00

// maxBlockBytes bounds the lines a packed block may claim to hold, so
// that a damaged one is an error rather than an allocation of that size.
const maxBlockBytes = 1 << 30

// packLines appends lines, compressed, to dst with its mark.
func packLines(dst, lines []byte) []byte {
	n := 1 + s2.MaxEncodedLen(len(lines))
	if cap(dst) < n {
		dst = make([]byte, 0, n)
	}
	dst = append(dst[:0], packedBlock)
	enc := s2.Encode(dst[1:n], lines)
	return dst[:1+len(enc)]
}

// unpackLines returns a stored block's lines, decompressing a packed one.
func unpackLines(stored []byte) (string, error) {
	if len(stored) == 0 || stored[0] != packedBlock {
		return string(stored), nil
	}
	n, err := s2.DecodedLen(stored[1:])
	if err != nil {
		return "", fmt.Errorf("packed block: %w", err)
	}
	if n > maxBlockBytes {
		return "", fmt.Errorf("packed block claims %d bytes, more than a block holds", n)
	}
	lines, err := s2.Decode(make([]byte, n), stored[1:])
	if err != nil {
		return "", fmt.Errorf("packed block: %w", err)
	}
	if len(lines) == 0 {
		return "", errors.New("packed block: empty")
	}
	return string(lines), nil
}
