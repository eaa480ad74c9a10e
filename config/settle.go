package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/quotagate/quotagate/engine"
)

// Settle is quota_manager.actions.<name>.settle: how the action's charge
// is settled from the upstream's response, reported by Envoy's access log.
// It is written "off" (YAML's unquoted off, which is false, works too), or
// as a mapping. A nil *Settle (no settle block) refunds a priced action on
// 5xx and on no response.
type Settle struct {
	// Off turns settlement off for the action.
	Off bool `json:"-"`
	// RefundOn lists the response codes that refund the charge: a code
	// (503), a class ("5xx") or "no_response" (reset, timeout). Omitted
	// means ["5xx", "no_response"]; an empty list refunds on nothing.
	RefundOn []StatusMatch `json:"refund_on"`
	// RefundWindows makes a refund also give back the request's counts in
	// its windows.
	RefundWindows bool `json:"refund_windows"`
	// UsageHeader names the response header that carries the actual units
	// (x-usage-tokens): the action's price is applied to it and the
	// difference charged or refunded.
	UsageHeader string `json:"usage_header"`
}

// UnmarshalJSON accepts "off", false (YAML's off), true (the default rule)
// or a mapping.
func (s *Settle) UnmarshalJSON(data []byte) error {
	switch t := bytes.TrimSpace(data); {
	case string(t) == `"off"` || string(t) == "false":
		*s = Settle{Off: true}
		return nil
	case string(t) == "true":
		*s = Settle{}
		return nil
	case len(t) > 0 && t[0] == '"':
		return fmt.Errorf(`settle: want off or a mapping, got %s`, t)
	}
	type plain Settle
	return json.Unmarshal(data, (*plain)(s))
}

// StatusMatch is one entry of refund_on, as written: "503", "5xx" or
// "no_response" (a number in the file is kept as its digits).
type StatusMatch string

// UnmarshalJSON accepts a number or a string.
func (m *StatusMatch) UnmarshalJSON(data []byte) error {
	t := bytes.TrimSpace(data)
	if len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return err
		}
		*m = StatusMatch(s)
		return nil
	}
	*m = StatusMatch(t)
	return nil
}

// walkSettle checks a settle value: "off", a boolean or a mapping. It
// reports whether n was handled (a mapping is left to walkStruct).
func walkSettle(n *node, path string, p *problems) bool {
	switch n.kind {
	case 'b':
		return true
	case '"':
		if n.text != "off" {
			p.mismatchf(n, path, `want off, or a mapping with the keys refund_on, refund_windows, usage_header; got %s`, describe(n))
		}
		return true
	case '{':
		return false
	}
	p.mismatchf(n, path, `want off, or a mapping with the keys refund_on, refund_windows, usage_header; got %s`, describe(n))
	return true
}

// walkStatusMatch checks one entry of refund_on: a number or a string
// (its value is validated with the rest of the rule).
func walkStatusMatch(n *node, path string, p *problems) {
	if n.kind != '0' && n.kind != '"' {
		p.mismatchf(n, path, `want a status code such as 503, a class such as "5xx", or "no_response"; got %s`, describe(n))
	}
}

// parseStatusMatch returns the range of response codes m stands for.
func parseStatusMatch(m StatusMatch) (engine.StatusRange, bool) {
	s := strings.ToLower(strings.TrimSpace(string(m)))
	switch {
	case s == "no_response":
		return engine.StatusRange{}, true
	case len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5':
		c := int(s[0]-'0') * 100
		return engine.StatusRange{From: c, To: c + 99}, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return engine.StatusRange{}, false
	}
	return engine.StatusRange{From: n, To: n}, true
}

// convertSettle converts an action's settle block (path names it),
// recording a problem for every value that is not valid. A nil s is nil:
// the engine's default for the action.
func convertSettle(s *Settle, a Action, path string, p *problems) *engine.SettleRule {
	if s == nil {
		return nil
	}
	if s.Off {
		return &engine.SettleRule{Off: true}
	}
	r := &engine.SettleRule{RefundWindows: s.RefundWindows}
	if s.RefundOn == nil {
		r.RefundStatuses = engine.DefaultSettleRule().RefundStatuses
	}
	for i, m := range s.RefundOn {
		sr, ok := parseStatusMatch(m)
		if !ok {
			p.addf(index(path+".refund_on", i), `must be a status code from 100 to 599, a class from "1xx" to "5xx", or "no_response"; got %q`, string(m))
			continue
		}
		r.RefundStatuses = append(r.RefundStatuses, sr)
	}
	if s.RefundWindows && s.RefundOn != nil && len(s.RefundOn) == 0 {
		p.addf(path+".refund_windows", "is true but refund_on is empty, so nothing is ever refunded; list the codes to refund on, or remove refund_windows")
	}
	if h := s.UsageHeader; h != "" {
		if !validHeaderName(h) {
			p.addf(path+".usage_header", "must be an HTTP header name (letters, digits and -, at most 128 bytes), got %q", h)
		} else if a.TokensPer1000Units == 0 {
			p.addf(path+".usage_header", "is set but tokens_per_1000_units is 0, so the actual units in %q cannot change the price; set a price per 1000 units, or remove usage_header", h)
		}
		r.UsageHeader = strings.ToLower(h)
	}
	return r
}

// validHeaderName reports whether h is a plausible HTTP header name that
// Envoy can log: a token of letters, digits and '-', not a pseudo-header.
func validHeaderName(h string) bool {
	if len(h) == 0 || len(h) > 128 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validateAccessLog checks server.access_log; grpcAddr is server.grpc_addr.
func validateAccessLog(a *AccessLog, grpcAddr string, p *problems) {
	const path = "server.access_log"
	if a.Addr != "" {
		checkAddr(a.Addr, path+".addr", p)
		if a.Addr == grpcAddr {
			p.addf(path+".addr", "is server.grpc_addr (%q); leave it empty to share that listener, or give another address", a.Addr)
		}
	}
	if n := a.MaxEntries; n < 1 || n > 100_000 {
		p.addf(path+".max_entries", "must be from 1 to 100000 (1000 by default), got %d", n)
	}
	if n := a.PendingSize; n < 1 || n > 10_000_000 {
		p.addf(path+".pending_size", "must be from 1 to 10000000 (100000 by default), got %d", n)
	}
	if d := a.PendingMaxAge.D(); d < time.Second || d > 24*time.Hour {
		p.addf(path+".pending_max_age", "must be from 1s to 24h (15m by default): Envoy flushes its access log within seconds, got %s", a.PendingMaxAge)
	}
}
