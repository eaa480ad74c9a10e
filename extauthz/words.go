package extauthz

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode"
	"unicode/utf8"
)

// Rune classes for runeClass.
const (
	classSep    = iota // ends a word
	classWord          // letter, number or mark
	classJoiner        // apostrophe or hyphen: neither starts nor ends a word
	classMulti         // an ideograph: a word by itself
)

// asciiWord is 1 for ASCII letters and digits; asciiKeep is 1 for the
// joiners (apostrophe, hyphen) that neither start nor end a word.
var asciiWord, asciiKeep = func() (word, keep [256]uint8) {
	for c := 0; c < utf8.RuneSelf; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			word[c] = 1
		case c == '\'' || c == '-':
			keep[c] = 1
		}
	}
	return word, keep
}()

// MaxWordsPerByte is the highest number of words per byte CountWords can
// report for long input: every word needs at least one byte and is followed
// by at least one byte that ends it. It is the default price of the unseen
// part of a truncated body, which makes that price an upper bound.
const MaxWordsPerByte = 0.5

// CountWords returns the number of words in s. A word is a maximal run of
// letters, numbers and combining marks in any script; an apostrophe or
// hyphen inside a run does not split it ("don't", "well-known"). Han
// ideographs, hiragana and katakana, which are written without spaces, count
// as one word each. Bytes that are not valid UTF-8 count as letters, so
// binary input is never priced as empty. CountWords does not allocate.
func CountWords(s string) int64 {
	var n int64
	var in uint8 // 1 while inside a word
	i := 0
	for i < len(s) {
		// Eight ASCII bytes at a time, classified together (asciiMasks).
		// Without a joiner among them the bytes are independent, and their
		// word starts, the letters whose previous byte is not one, are a
		// population count. A chunk with a byte of 0x80 or more takes the
		// paths below for one byte or character, then chunks resume.
		if i+8 <= len(s) {
			if x := binary.LittleEndian.Uint64([]byte(s[i : i+8])); x&highBits == 0 {
				word, join := asciiMasks(x)
				if join == 0 {
					n += int64(bits.OnesCount64(word &^ (word<<8 | uint64(in)<<7)))
					in = uint8(word >> 63)
				} else {
					var w int64
					w, in = countJoined(word, join, in)
					n += w
				}
				i += 8
				continue
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			// Branch-free: a word byte sets in, a separator clears it, a
			// joiner keeps it; a word starts where in goes from 0 to 1.
			next := in&asciiKeep[c] | asciiWord[c]
			n += int64(next &^ in)
			in = next
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		var class uint8
		if r < 0x10000 && size > 1 {
			class = bmpClass[r]
		} else {
			class = runeClass(r, size)
		}
		switch class {
		case classWord:
			n += int64(1 &^ in)
			in = 1
		case classSep:
			in = 0
		case classMulti: // an ideograph is a word on its own
			n++
			in = 0
		}
	}
	return n
}

// highBits has the high bit of each of eight bytes set.
const highBits = 0x8080808080808080

// countJoined counts the word starts in eight bytes classified by
// asciiMasks that hold a joiner, given and returning whether a word is open
// at their edges. A joiner carries the open word across it, so the bytes
// are taken one at a time.
func countJoined(word, join uint64, in uint8) (int64, uint8) {
	var n int64
	for j := range 8 {
		sh := 8*j + 7
		next := in&uint8(join>>sh) | uint8(word>>sh&1)
		n += int64(next &^ in)
		in = next
	}
	return n, in
}

// asciiMasks classifies eight ASCII bytes at once (SWAR): byte k of word
// has its high bit set when byte k of x is a letter or digit, byte k of
// join when it is an apostrophe or hyphen; every other bit is clear. Every
// byte is below 0x80, so no per-byte sum or difference carries into its
// neighbour. The masks stay in place, rather than gathered into a byte, so
// that counting word starts is a shift and a 64-bit population count.
func asciiMasks(x uint64) (word, join uint64) {
	const ones = 0x0101010101010101
	lower := x | 0x20*ones // folds A-Z onto a-z
	letter := (lower + (0x80-'a')*ones) & ((0x80+'z')*ones - lower)
	digit := (x + (0x80-'0')*ones) & ((0x80+'9')*ones - x)
	apos := (x ^ '\''*ones) + 0x7f*ones // high bit clear where the byte is '
	hyphen := (x ^ '-'*ones) + 0x7f*ones
	return (letter | digit) & highBits, ^(apos & hyphen) & highBits
}

// bmpClass caches runeClass for the Basic Multilingual Plane, where
// almost all text lives, so counting does not search Unicode's range
// tables per character.
var bmpClass = func() *[0x10000]uint8 {
	var t [0x10000]uint8
	for r := rune(0x80); r < 0x10000; r++ {
		t[r] = runeClass(r, utf8.RuneLen(r))
	}
	return &t
}()

// runeClass classifies a non-ASCII rune; classMulti means "a word by itself".
func runeClass(r rune, size int) uint8 {
	switch {
	case r == utf8.RuneError && size == 1:
		return classWord
	case r == '\u2019': // right single quotation mark, the typographic apostrophe
		return classJoiner
	case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana):
		return classMulti
	case unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r):
		return classWord
	}
	return classSep
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of s, left
// there when a proxy cut the body in the middle of a character, so that the
// cut character is priced with the unseen part of the body.
func trimPartialRune(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			return s
		}
	}
	return s
}

// partialWords prices a truncated body: the words counted in the part that
// arrived plus the unseen bytes (total − received) at wordsPerByte, rounded
// up. A word cut in two by the truncation is counted in both parts, which
// only ever over-charges. The caller bounds total by MaxBodyBytesLimit and
// wordsPerByte by 1, so the sum is at most 2^41 and exact in a float64;
// beyond that (a caller's bug) the estimate saturates rather than wraps.
func partialWords(counted int64, received, total int64, wordsPerByte float64) int64 {
	if total <= received || !(wordsPerByte > 0) {
		return counted
	}
	est := math.Ceil(float64(total-received) * wordsPerByte)
	if !(est < float64(math.MaxInt64/2)) || counted > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return counted + int64(est)
}

// DefaultMaxBodyBytes is the default of Policy.MaxBodyBytes: 64 MiB.
const DefaultMaxBodyBytes = 64 << 20

// MaxBodyBytesLimit is the largest Policy.MaxBodyBytes: 1 TiB.
const MaxBodyBytesLimit = 1 << 40
