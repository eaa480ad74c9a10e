package pathnorm

import "strings"

// Path returns p normalized as described in the package documentation. A
// path that is already normal is returned as is, without allocating.
func Path(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if isNormal(p) {
		return p
	}
	b := make([]byte, 0, len(p)+1)
	if len(p) == 0 || (p[0] != '/' && p[0] != '\\' && !escapedSlashAt(p, 0)) {
		b = append(b, '/')
	}
	b = canonical(b, p)
	b = removeDotSegments(b)
	b = mergeSlashes(b)
	return string(b)
}

// isNormal reports whether p (without query or fragment) is already its
// own normal form: it starts with "/", holds only bytes allowed in a path,
// no "%" (every percent-encoding either decodes or gets its hex
// upper-cased, so normal paths holding one are rare and take the slow
// path), no empty segment and no dot segment.
func isNormal(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || !allowed(c) {
			return false
		}
		if c != '/' {
			continue
		}
		// c starts a segment: reject "", "." and "..".
		rest := p[i+1:]
		seg := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg = rest[:j]
		}
		if (seg == "" && i+1 < len(p)) || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// escapedSlashAt reports whether p[i:] starts with %2F or %5C.
func escapedSlashAt(p string, i int) bool {
	if i+2 >= len(p) || p[i] != '%' {
		return false
	}
	h, l := p[i+1], p[i+2]|0x20
	return (h == '2' && l == 'f') || (h == '5' && l == 'c')
}

const hexDigits = "0123456789ABCDEF"

// canonical appends to b the bytes of p with escaped slashes and
// backslashes turned into "/", unreserved characters decoded, other
// percent-encodings upper-cased, and bytes not allowed in a path encoded.
func canonical(b []byte, p string) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%' && escapedSlashAt(p, i):
			b = append(b, '/')
			i += 2
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if unreserved(v) {
				b = append(b, v)
			} else {
				b = append(b, '%', hexDigits[v>>4], hexDigits[v&15])
			}
			i += 2
		case c == '\\':
			b = append(b, '/')
		case c == '%' || !allowed(c):
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
	}
	return b
}

// removeDotSegments removes "." and ".." segments from the absolute path b
// in place (RFC 3986 section 5.2.4); ".." at the root is dropped. A path
// that ended in a dot segment keeps its trailing slash.
func removeDotSegments(b []byte) []byte {
	out := b[:0]
	i := 0
	for i < len(b) {
		// b[i] is '/'; the segment runs to the next '/'.
		j := i + 1
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg := b[i+1 : j]
		last := j == len(b)
		switch {
		case len(seg) == 1 && seg[0] == '.':
			if last {
				out = append(out, '/')
			}
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if k := lastSlash(out); k >= 0 {
				out = out[:k]
			}
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, b[i:j]...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

func lastSlash(b []byte) int {
	for k := len(b) - 1; k >= 0; k-- {
		if b[k] == '/' {
			return k
		}
	}
	return -1
}

// mergeSlashes collapses every run of "/" in b into one, in place.
func mergeSlashes(b []byte) []byte {
	out := b[:0]
	for i, c := range b {
		if c == '/' && i > 0 && b[i-1] == '/' {
			continue
		}
		out = append(out, c)
	}
	return out
}

// unreserved reports whether c is an RFC 3986 unreserved character.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// allowed reports whether c may appear unencoded in a normal path: an
// RFC 3986 pchar other than "%", or "/".
func allowed(c byte) bool {
	if unreserved(c) {
		return true
	}
	switch c {
	case '/', ':', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
