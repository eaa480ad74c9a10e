package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// ErrInvalidConfig is wrapped by every error of Config.Validate.
var ErrInvalidConfig = errors.New("admin: invalid config")

// Defaults applied by withDefaults.
const (
	defaultAuthFailures = 10
	// defaultAddressFailuresFactor sets the default per-address ceiling
	// to this many times AuthFailuresPerMinute.
	defaultAddressFailuresFactor = 20
	authFailureWindow            = time.Minute
	defaultStreamInterval        = time.Second
)

// Config configures the admin server; the wiring builds it from the
// configuration file's admin block. The zero value serves nothing (Addr is
// empty). A Config must not be changed after it is passed to New.
type Config struct {
	// Addr is the listen address, such as "127.0.0.1:8081". Empty turns the
	// admin server off; --admin-addr overrides it.
	Addr string
	// Tokens are the accepted bearer tokens. With none, the server only
	// starts on a loopback address, and then serves local clients only.
	Tokens []TokenConfig
	// TLS serves HTTPS, and with ClientCAFile requires client certificates.
	TLS TLSConfig
	// TraceURL is the link template for a decision's trace in Jaeger or
	// Tempo; "{trace_id}" is replaced by the trace id, e.g.
	// "https://tempo.example/explore?traceId={trace_id}". Empty means no
	// links.
	TraceURL string
	// AuthFailuresPerMinute is how many times one wrong token may be
	// presented per minute before it is answered with 429 until the
	// minute ends. Failures are counted per presented token (its
	// SHA-256), so a wrong token never locks out a valid one. Zero means
	// 10.
	AuthFailuresPerMinute int
	// AuthFailuresPerAddressPerMinute is how many failed authentications
	// one client address (an IPv6 /64) may make per minute, whatever the
	// tokens, before its failing requests are answered with 429 until the
	// minute ends. It only ever refuses requests whose token is not
	// valid: a valid token is served from a blocked address, so operators
	// behind one ingress address are not locked out by an attacker
	// behind the same one. Zero means 20 times AuthFailuresPerMinute.
	AuthFailuresPerAddressPerMinute int
}

// TokenConfig is one accepted bearer token.
type TokenConfig struct {
	// Name identifies the token in logs and ledger records (the actor).
	Name string
	// SHA256 is the token's SHA-256, 64 hex digits (HashToken). The token
	// itself is never configured.
	SHA256 string
	// Scopes are what the token may do; the highest one counts.
	Scopes []Scope
	// Team restricts the token to one team and its members; empty means
	// unrestricted.
	Team string
}

// TLSConfig configures HTTPS for the admin listener.
type TLSConfig struct {
	// CertFile and KeyFile are the server's PEM certificate chain and key.
	// Both empty means plain HTTP.
	CertFile string
	KeyFile  string
	// ClientCAFile, if set, makes client certificates mandatory: they must
	// verify against these PEM CA certificates.
	ClientCAFile string
}

// HashToken returns the SHA-256 of token in hex, the form Config stores.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (c Config) withDefaults() Config {
	if c.AuthFailuresPerMinute <= 0 {
		c.AuthFailuresPerMinute = defaultAuthFailures
	}
	if c.AuthFailuresPerAddressPerMinute <= 0 {
		c.AuthFailuresPerAddressPerMinute = defaultAddressFailuresFactor * c.AuthFailuresPerMinute
	}
	return c
}

// Validate reports every problem in c, each a *engine.FieldError whose
// path is relative to c (tokens[0].sha256), joined with errors.Join and
// wrapped with ErrInvalidConfig. It never repeats a token hash, in case a
// token was pasted there by mistake.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &engine.FieldError{Path: path, Problem: fmt.Sprintf(format, args...)})
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			bad("addr", "must be host:port, such as 127.0.0.1:8081, got %q", c.Addr)
		}
	}
	names := map[string]int{}
	for i, t := range c.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			bad(p+".name", "must not be empty: it names the actor in logs and the ledger")
		} else if j, ok := names[t.Name]; ok {
			bad(p+".name", "duplicate name %q (also tokens[%d])", t.Name, j)
		} else {
			names[t.Name] = i
		}
		if !isSHA256Hex(t.SHA256) {
			bad(p+".sha256", "must be 64 hex digits, the SHA-256 of the token (printf %%s TOKEN | sha256sum), got %d characters", len(t.SHA256))
		}
		if maxScope(t.Scopes) == ScopeNone {
			bad(p+".scopes", "must list at least one of read, write, admin")
		}
	}
	if c.TraceURL != "" {
		u, err := url.Parse(strings.ReplaceAll(c.TraceURL, "{trace_id}", "x"))
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("trace_url", "must be an http or https URL, got %q", c.TraceURL)
		case !strings.Contains(c.TraceURL, "{trace_id}"):
			bad("trace_url", "must contain {trace_id}, such as https://tempo.example/explore?traceId={trace_id}, got %q", c.TraceURL)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file must be set together")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		bad("tls.client_ca_file", "requires cert_file and key_file: client certificates need TLS")
	}
	if c.AuthFailuresPerMinute < 0 {
		bad("auth_failures_per_minute", "must be >= 0, got %d", c.AuthFailuresPerMinute)
	}
	if c.AuthFailuresPerAddressPerMinute < 0 {
		bad("auth_failures_per_address_per_minute", "must be >= 0 (0 means 20 times auth_failures_per_minute), got %d", c.AuthFailuresPerAddressPerMinute)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func maxScope(scopes []Scope) Scope {
	m := ScopeNone
	for _, s := range scopes {
		m = max(m, s)
	}
	return m
}

// IsLoopback reports whether the host:port addr binds only a loopback
// interface. An empty host, a wildcard address or a host name other than
// "localhost" counts as beyond loopback, since it may resolve or bind to
// any interface. It is the one definition quotagate uses: the admin server
// refuses to serve without tokens beyond loopback, and the wiring warns
// about a trusted identity header on such a listener.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
