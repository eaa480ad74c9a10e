package extauthz

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCountWords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{name: "empty", in: "", want: 0},
		{name: "spaces only", in: " \t\n ", want: 0},
		{name: "simple", in: "hello world", want: 2},
		{name: "punctuation", in: "Hello, world! How are you?", want: 5},
		{name: "apostrophe and hyphen join", in: "don't stop well-known", want: 3},
		{name: "lone hyphen is not a word", in: "a - b", want: 2},
		{name: "typographic apostrophe", in: "it\u2019s fine", want: 2},
		{name: "digits", in: "version 2 of 10", want: 4},
		{name: "accented latin", in: "café naïve résumé", want: 3},
		{name: "combining mark stays in word", in: "cafe\u0301 ok", want: 2},
		{name: "cyrillic", in: "привет мир", want: 2},
		{name: "greek", in: "γειά σου κόσμε", want: 3},
		{name: "arabic", in: "مرحبا بالعالم", want: 2},
		{name: "han ideographs count singly", in: "你好世界", want: 4},
		{name: "japanese kana", in: "こんにちは", want: 5},
		{name: "mixed latin and han", in: "hello你好 world", want: 4},
		{name: "json body", in: `{"text":"the quick brown fox"}`, want: 5},
		{name: "invalid utf8 counts", in: "\xff\xfe", want: 1},
		{name: "emoji separates", in: "a🙂b", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CountWords(tt.in); got != tt.want {
				t.Errorf("CountWords(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestCountWordsDensityBound(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{name: "one-letter words", in: strings.Repeat("a ", 1000)},
		{name: "ideographs", in: strings.Repeat("字", 1000)},
		{name: "letter then ideograph", in: strings.Repeat("a字", 1000)},
		{name: "invalid bytes", in: strings.Repeat("\xff ", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := CountWords(tt.in)
			if bound := int64(float64(len(tt.in)) * MaxWordsPerByte); n > bound {
				t.Errorf("%d words in %d bytes exceeds the bound %d", n, len(tt.in), bound)
			}
		})
	}
}

func TestPartialWords(t *testing.T) {
	tests := []struct {
		name                     string
		counted, received, total int64
		perByte                  float64
		want                     int64
	}{
		{name: "not truncated", counted: 10, received: 60, total: 60, perByte: 0.5, want: 10},
		{name: "content-length smaller than body", counted: 10, received: 60, total: 50, perByte: 0.5, want: 10},
		{name: "tail priced at bound", counted: 10, received: 60, total: 101, perByte: 0.5, want: 31},
		{name: "custom rate rounds up", counted: 0, received: 0, total: 11, perByte: 0.2, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := partialWords(tt.counted, tt.received, tt.total, tt.perByte); got != tt.want {
				t.Errorf("partialWords = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestPartialWordsNeverUnderCharges cuts bodies at every offset and checks
// that the truncated price is at least the full count.
func TestPartialWordsNeverUnderCharges(t *testing.T) {
	bodies := []string{
		"the quick brown fox jumps over the lazy dog",
		strings.Repeat("a ", 50),
		strings.Repeat("字a", 30),
		"résumé naïve café 你好 don't",
	}
	for _, body := range bodies {
		full := CountWords(body)
		for cut := 0; cut <= len(body); cut++ {
			prefix := trimPartialRune(body[:cut])
			got := partialWords(CountWords(prefix), int64(len(prefix)), int64(len(body)), MaxWordsPerByte)
			if got < full {
				t.Fatalf("body %q cut at %d: priced %d words, full body has %d", body, cut, got, full)
			}
		}
	}
}

func BenchmarkCountWords(b *testing.B) {
	ascii := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 70)
	mixed := strings.Repeat("Übersetzung 翻訳 of naïve text, s'il vous plaît. ", 60)
	// prose is like cmd/loadgen's bodies: English with a word in another
	// script now and then.
	prose := strings.Repeat("The customer asked for a résumé of the quarterly report and its 翻訳 in German. ", 55)
	for _, bc := range []struct{ name, in string }{{"ascii", ascii}, {"mixed", mixed}, {"prose", prose}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				CountWords(bc.in)
			}
		})
	}
}

// referenceCount is CountWords written plainly, rune by rune.
func referenceCount(s string) int64 {
	var n int64
	in := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		class := runeClass(r, size)
		switch {
		case r == '-' || r == '\'':
			class = classJoiner
		case r < utf8.RuneSelf && asciiWord[r] == 1:
			class = classWord
		case r < utf8.RuneSelf:
			class = classSep
		}
		switch class {
		case classWord:
			if !in {
				n++
			}
			in = true
		case classSep:
			in = false
		case classMulti:
			n++
			in = false
		}
	}
	return n
}

// TestCountWordsMatchesReference compares the fast paths (8-byte chunks,
// the BMP table) with the plain definition on random text.
func TestCountWordsMatchesReference(t *testing.T) {
	pieces := []string{"a", "Z", "9", " ", "  ", "\n", ".", ",", "'", "-", "é", "ß", "字", "カ", "\u2019", "\xff", "🙂", "word", "don't", "a-b", "abcdefghij", "1234567"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s := b.String()
		if got, want := CountWords(s), referenceCount(s); got != want {
			t.Fatalf("CountWords(%q) = %d, reference %d", s, got, want)
		}
	}
}

// TestASCIIMasks checks the SWAR classification against the byte tables for
// every ASCII byte in every position.
func TestASCIIMasks(t *testing.T) {
	for c := range utf8.RuneSelf {
		for k := range 8 {
			x := uint64(' ') * 0x0101010101010101
			x = x&^(0xff<<(8*k)) | uint64(c)<<(8*k)
			word, join := asciiMasks(x)
			bit := 8*k + 7
			if got, want := uint8(word>>bit&1), asciiWord[c]; got != want {
				t.Errorf("byte %q at %d: word bit %d, want %d", rune(c), k, got, want)
			}
			if got, want := uint8(join>>bit&1), asciiKeep[c]; got != want {
				t.Errorf("byte %q at %d: join bit %d, want %d", rune(c), k, got, want)
			}
			if word&^(1<<bit) != 0 || join&^(1<<bit) != 0 {
				t.Errorf("byte %q at %d: spaces classified as word %016x join %016x", rune(c), k, word, join)
			}
		}
	}
}

// FuzzCountWords checks the fast paths (ASCII runs of up to eight bytes,
// the BMP table) against the plain rune-by-rune definition.
func FuzzCountWords(f *testing.F) {
	for _, s := range []string{
		"", "hello world", "don't stop well-known", "abcdefgh-ijklmnop", "a'b'c'd'e'f'g'h'i",
		"café naïve résumé", "hello你好 world", "12345678é12345678", "\xff\xfeabcdefgh", "a🙂b",
		"Übersetzung 翻訳 of naïve text, s'il vous plaît.", "-------- ''", "x\u2019s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := CountWords(s), referenceCount(s); got != want {
			t.Errorf("CountWords(%q) = %d, reference %d", s, got, want)
		}
	})
}
