package extauthz

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/quotagate/quotagate/config"
)

// TestPartialBodyDefaultCoversMeasuredText measures words per byte, as
// CountWords counts them, on the text samples in testdata/wordsperbyte
// (prose in eleven languages and scripts, code, JSON, CSV, emoji), and
// requires the default price of a truncated body's unseen bytes, in the
// code and in the embedded default configuration, to be at least the
// densest of them, and the unseen rest of each sample, wherever it is cut,
// to hold no more words than the default prices it at: then no language
// a caller sends is under-charged.
// The figures are quoted in README ("Truncated bodies").
func TestPartialBodyDefaultCoversMeasuredText(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "wordsperbyte", "*.txt"))
	if err != nil || len(paths) < 10 {
		t.Fatalf("samples: %v, %v", paths, err)
	}
	file, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	var o Policy
	if err := o.withDefaults(); err != nil {
		t.Fatal(err)
	}
	defaults := map[string]float64{
		"Policy.WordsPerByte (zero value)":                 o.WordsPerByte,
		"default.yaml pricing.partial_body_words_per_byte": file.Pricing.PartialBodyWordsPerByte,
	}
	densest, densestName := 0.0, ""
	var lines []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b) // as sent: a body ends with its last separator
		words := CountWords(text)
		// Wherever a proxy cuts the body, the unseen rest holds no more
		// words than the default prices it at.
		for name, v := range defaults {
			for cut := range len(text) {
				rest := trimPartialRune(text[cut:])
				if w, priced := CountWords(text[cut:]), partialWords(0, 0, int64(len(text)-cut), v); w > priced {
					t.Fatalf("%s: the %d bytes after byte %d hold %d words, priced as %d at %s = %g (%q)", p, len(text)-cut, cut, w, priced, name, v, rest)
				}
			}
		}
		d := float64(words) / float64(len(text))
		lines = append(lines, filepath.Base(p)+": "+itoa(words)+" words / "+itoa(int64(len(text)))+" bytes = "+ftoa(d))
		if d > densest {
			densest, densestName = d, filepath.Base(p)
		}
	}
	slices.Sort(lines)
	t.Logf("words per byte:\n%s", strings.Join(lines, "\n"))
	for name, v := range defaults {
		if v < densest {
			t.Errorf("%s = %g is below the %g words per byte measured in %s: truncated bodies in that language would be under-charged", name, v, densest, densestName)
		}
	}
	if MaxWordsPerByte < densest {
		t.Errorf("MaxWordsPerByte %g is below the measured %g of %s", MaxWordsPerByte, densest, densestName)
	}
	// The bound itself: the densest text CountWords can see is a one-byte
	// word and a one-byte separator, over and over.
	if d := float64(CountWords(strings.Repeat("a ", 1000))) / 2000; d != MaxWordsPerByte {
		t.Errorf("a b c ... counts %g words per byte, want MaxWordsPerByte %g", d, MaxWordsPerByte)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
