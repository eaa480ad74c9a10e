// Package pathnorm normalizes HTTP request paths the way Envoy's
// HttpConnectionManager does with normalize_path: true, merge_slashes: true
// and path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT, so that
// quotagate matches its routes on the path the upstream will see, whatever
// spelling a client chose.
//
// Path applies, in Envoy's order:
//
//  1. The query and fragment are cut off: they never affect matching.
//  2. Escaped slashes (%2F, %5C, in either hex case) are unescaped, as
//     UNESCAPE_AND_REDIRECT does before it redirects the client to the
//     unescaped path; a backslash then counts as a slash.
//  3. RFC 3986 normalization (Envoy's normalize_path): percent-encoded
//     unreserved characters (ALPHA, DIGIT, "-", ".", "_", "~") are decoded,
//     other percent-encodings get upper-case hex, a "%" that starts no valid
//     encoding becomes "%25", and every byte that may not appear in a path
//     (controls, NUL, space, non-ASCII, and the like) is percent-encoded;
//     then the dot segments "." and ".." (also spelled %2e) are removed, never
//     climbing above the root.
//  4. Runs of slashes are merged into one (merge_slashes).
//
// Matching stays case-sensitive, as Envoy's prefix matching is: /V1/translate
// and /v1/translate are different paths. Path parameters (";x=1") are kept,
// as Envoy keeps them. The result always starts with "/", is a valid RFC
// 3986 absolute path, and is a fixed point: Path(Path(p)) == Path(p).
package pathnorm
