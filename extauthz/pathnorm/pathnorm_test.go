package pathnorm

import (
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	long := strings.Repeat("a", 70000)
	tests := []struct {
		name, in, want string
	}{
		{name: "already normal", in: "/v1/summarize", want: "/v1/summarize"},
		{name: "root", in: "/", want: "/"},
		{name: "empty", in: "", want: "/"},
		{name: "no leading slash", in: "v1/translate", want: "/v1/translate"},
		{name: "encoded unreserved letter", in: "/v1/%73ummarize", want: "/v1/summarize"},
		{name: "encoded unreserved, lower-case hex", in: "/v1/%74ranslate", want: "/v1/translate"},
		{name: "every unreserved character encoded", in: "/%76%31/%7E%2d%5F%2E%41", want: "/v1/~-_.A"},
		{name: "double slash in front", in: "//v1/summarize", want: "/v1/summarize"},
		{name: "double slash inside", in: "/v1//summarize", want: "/v1/summarize"},
		{name: "many slashes", in: "///v1////summarize//", want: "/v1/summarize/"},
		{name: "dot segment", in: "/v1/./summarize", want: "/v1/summarize"},
		{name: "dot-dot segment", in: "/v1/x/../summarize", want: "/v1/summarize"},
		{name: "dot-dot above the root", in: "/../../v1/summarize", want: "/v1/summarize"},
		{name: "encoded dot-dot, mixed case", in: "/v1/x/%2e%2E/summarize", want: "/v1/summarize"},
		{name: "half-encoded dot-dot", in: "/v1/x/.%2e/summarize", want: "/v1/summarize"},
		{name: "trailing dot", in: "/v1/summarize/.", want: "/v1/summarize/"},
		{name: "trailing dot-dot", in: "/v1/summarize/x/..", want: "/v1/summarize/"},
		{name: "dot-dot over an empty segment", in: "/v1//../summarize", want: "/v1/summarize"},
		{name: "three dots are a name", in: "/v1/.../summarize", want: "/v1/.../summarize"},
		{name: "escaped slash", in: "/v1%2Fsummarize", want: "/v1/summarize"},
		{name: "escaped slash, lower case", in: "/v1%2fsummarize", want: "/v1/summarize"},
		{name: "escaped backslash", in: "/v1%5Csummarize", want: "/v1/summarize"},
		{name: "escaped slash as the first byte", in: "%2Fv1/summarize", want: "/v1/summarize"},
		{name: "raw backslash", in: "\\v1\\summarize", want: "/v1/summarize"},
		{name: "escaped slash then dot-dot", in: "/v1/x%2F..%2Fsummarize", want: "/v1/summarize"},
		{name: "double-encoded slash stays encoded", in: "/v1%252Fsummarize", want: "/v1%252Fsummarize"},
		{name: "reserved encoding keeps its escape, hex upper-cased", in: "/v1/a%3bb%3F", want: "/v1/a%3Bb%3F"},
		{name: "stray percent", in: "/v1/100%", want: "/v1/100%25"},
		{name: "percent with one hex digit", in: "/v1/%4", want: "/v1/%254"},
		{name: "percent with non-hex", in: "/v1/%zz", want: "/v1/%25zz"},
		{name: "encoded percent stays encoded", in: "/v1/%2541", want: "/v1/%2541"},
		{name: "NUL", in: "/v1/sum\x00marize", want: "/v1/sum%00marize"},
		{name: "encoded NUL", in: "/v1/sum%00marize", want: "/v1/sum%00marize"},
		{name: "control and space", in: "/v1/a b\tc\x7f", want: "/v1/a%20b%09c%7F"},
		{name: "non-ASCII", in: "/v1/übersetzen", want: "/v1/%C3%BCbersetzen"},
		{name: "invalid UTF-8", in: "/v1/\xff\xfe", want: "/v1/%FF%FE"},
		{name: "encoded non-ASCII upper-cased", in: "/v1/%c3%bc", want: "/v1/%C3%BC"},
		{name: "path parameters are kept", in: "/v1/translate;jsessionid=1", want: "/v1/translate;jsessionid=1"},
		{name: "path parameter in a directory", in: "/v1;x=1/translate", want: "/v1;x=1/translate"},
		{name: "query is cut", in: "/v1/summarize?a=/../x", want: "/v1/summarize"},
		{name: "fragment is cut", in: "/v1/summarize#/../x", want: "/v1/summarize"},
		{name: "encoded question mark is not a query", in: "/v1/summarize%3Fx", want: "/v1/summarize%3Fx"},
		{name: "case is kept", in: "/V1/Summarize", want: "/V1/Summarize"},
		{name: "characters that must be encoded", in: "/a\"<>`{}|^[]", want: "/a%22%3C%3E%60%7B%7D%7C%5E%5B%5D"},
		{name: "sub-delims, colon and at are kept", in: "/a!$&'()*+,;=:@", want: "/a!$&'()*+,;=:@"},
		{name: "overlong", in: "/v1/" + long + "/../summarize", want: "/v1/summarize"},
		{name: "overlong dot segments", in: strings.Repeat("/.", 20000) + "/v1/summarize", want: "/v1/summarize"},
		{name: "overlong slashes", in: strings.Repeat("/", 50000) + "v1/summarize", want: "/v1/summarize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Path(tt.in)
			if got != tt.want {
				t.Errorf("Path(%.80q) = %.80q, want %.80q", tt.in, got, tt.want)
			}
			if again := Path(got); again != got {
				t.Errorf("Path is not idempotent: Path(%.80q) = %.80q", got, again)
			}
		})
	}
}

func TestPathNormalDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/v1/translate", "/", "/v1/translate?x=%2F..", "/a;b=c/d~e"} {
		if n := testing.AllocsPerRun(100, func() { _ = Path(p) }); n != 0 {
			t.Errorf("Path(%q) allocates %v times, want 0", p, n)
		}
	}
}

// FuzzPath checks that Path is idempotent, that its result is a valid
// absolute path with no dot segment, empty segment or byte that needs
// encoding, and that appending a query or fragment changes nothing.
func FuzzPath(f *testing.F) {
	for _, s := range []string{"/v1/%73ummarize", "//v1/summarize", "/v1/./summarize", "/v1/x/../summarize",
		"/v1/x/%2e%2E/summarize", "/v1%2Fsummarize", "/v1%5csummarize", "\\v1", "/%", "/%%34%31", "/%2%35",
		"/v1/\x00", "/ü", "/v1;x=1/a", "", "?", "#/..", "/..%2F..%2F", "%2F%2e%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n := Path(p)
		if again := Path(n); again != n {
			t.Fatalf("Path(%q) = %q but Path(%q) = %q", p, n, n, again)
		}
		if !isNormal(n) && strings.IndexByte(n, '%') < 0 {
			t.Fatalf("Path(%q) = %q is not normal", p, n)
		}
		if n[0] != '/' || strings.Contains(n, "//") || strings.Contains(n, "/./") || strings.Contains(n, "/../") ||
			strings.HasSuffix(n, "/.") || strings.HasSuffix(n, "/..") {
			t.Fatalf("Path(%q) = %q keeps a dot or empty segment", p, n)
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			if c == '%' {
				if i+2 >= len(n) || !isHex(n[i+1]) || !isHex(n[i+2]) || n[i+1] != upper(n[i+1]) || n[i+2] != upper(n[i+2]) {
					t.Fatalf("Path(%q) = %q has a bad percent-encoding at %d", p, n, i)
				}
				if v := unhex(n[i+1])<<4 | unhex(n[i+2]); unreserved(v) || v == '/' || v == '\\' {
					t.Fatalf("Path(%q) = %q keeps %%%02X encoded", p, n, v)
				}
				continue
			}
			if !allowed(c) {
				t.Fatalf("Path(%q) = %q holds byte %q, which must be encoded", p, n, c)
			}
		}
		if !strings.ContainsAny(p, "?#") {
			if q := Path(p + "?a=/../b#c"); q != n {
				t.Fatalf("a query changed the path: Path(%q) = %q, Path(%q) = %q", p, n, p+"?a=/../b#c", q)
			}
		}
	})
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 32
	}
	return c
}
