package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOverflowIsRefused sends the overflow to the real binary on
// the embedded default configuration: a partial body whose content-length
// claims up to MaxInt64 bytes through gRPC, and a Content-Length of
// MaxInt64 with a body over the forwarded size through the HTTP
// authorization mode. Each is refused with 413 request_too_large, without
// Retry-After, and charges nothing; an ordinary request still costs what
// it should; and quotagate usage, as a report and as a billing export,
// never shows a negative amount.
func TestOverflowIsRefused(t *testing.T) {
	dir := t.TempDir()
	authzAddr := freeAddr(t)
	s := startServer(t, "", "--data-dir", dir, "--authz-http-addr", authzAddr)

	claims := []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 62, 1 << 53, 67108865, 1 << 40}
	for _, user := range []string{"demo-standard", "demo-free", "demo-team-a"} {
		for _, cl := range claims {
			t.Run(fmt.Sprintf("grpc %s content-length %d", user, cl), func(t *testing.T) {
				resp := s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: "word word word",
					headers: map[string]string{"x-user-id": user, "content-length": strconv.FormatInt(cl, 10), "x-envoy-auth-partial-body": "true"}})
				d := resp.GetDeniedResponse()
				if d == nil || d.GetStatus().GetCode() != 413 {
					t.Fatalf("answer %v, want 413", resp)
				}
				h := headers(resp)
				if _, ok := h["retry-after"]; ok {
					t.Errorf("request_too_large carries Retry-After %q", h["retry-after"])
				}
				var body struct {
					Error     string `json:"error"`
					LimitName string `json:"limit_name"`
					Amount    int64  `json:"amount"`
				}
				if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Error != "request_too_large" || body.LimitName == "" || body.Amount < 0 {
					t.Errorf("body %s (%v), want request_too_large naming its limit", d.GetBody(), err)
				}
				if md := resp.GetDynamicMetadata().AsMap(); md["reason"] != "request_too_large" || md["cost"].(float64) < 0 {
					t.Errorf("dynamic metadata %v", md)
				}
			})
		}
	}
	t.Run("grpc 700 000 words against freemium's 20 000", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: "a b c ",
			headers: map[string]string{"x-user-id": "demo-free", "content-length": "1400000", "x-envoy-auth-partial-body": "true"}})
		d := resp.GetDeniedResponse()
		if d.GetStatus().GetCode() != 413 || !strings.Contains(d.GetBody(), `"limit_name":"translate-words"`) || strings.Contains(d.GetBody(), `retry_after`) {
			t.Fatalf("answer %v, want 413 naming translate-words without a retry", resp)
		}
	})
	t.Run("grpc ordinary request is still priced", func(t *testing.T) {
		resp := s.check(t, envoyRequest{path: "/v1/translate", action: "translate", body: strings.Repeat("word ", 3000),
			headers: map[string]string{"x-user-id": "demo-standard"}})
		if resp.GetOkResponse() == nil || headers(resp)["x-quota-cost"] != "15" {
			t.Fatalf("answer %v, want an allow costing 15", resp)
		}
	})
	for _, cl := range []string{strconv.FormatInt(math.MaxInt64, 10), "67108865"} {
		t.Run("http content-length "+cl, func(t *testing.T) {
			status, hdr, body := rawHTTPCheck(t, authzAddr, cl, 1<<20+100<<10)
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"error":"request_too_large"`) {
				t.Fatalf("status %d body %s, want 413 request_too_large", status, body)
			}
			if hdr.Get("Retry-After") != "" {
				t.Errorf("Retry-After %q on a request that can never fit", hdr.Get("Retry-After"))
			}
		})
	}

	if err := s.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	out, stderr, code := runBinary(t, nil, "ledger", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "intact") {
		t.Errorf("ledger verify: exit %d, %q %q", code, out, stderr)
	}
	for _, args := range [][]string{
		{"usage", "--data-dir", dir, "--by", "day", "--format", "json"},
		{"usage", "--data-dir", dir, "--subject", "demo-standard", "--by", "hour", "--format", "json"},
		{"usage", "--data-dir", dir, "--by", "month", "--format", "json", "--prices", "freemium=0,standard=0.0001,enterprise=0.00008"},
	} {
		out, stderr, code := runBinary(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) == 0 {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		for _, r := range rows {
			for k, v := range r {
				if n, ok := v.(float64); ok && n < 0 {
					t.Errorf("%v: %s = %g in %v", args, k, n, r)
				}
			}
		}
		if args[3] == "demo-standard" {
			var tokens float64
			for _, r := range rows {
				for k, v := range r {
					if strings.EqualFold(k, "tokens") {
						tokens += v.(float64)
					}
				}
			}
			if tokens != 15 {
				t.Errorf("demo-standard was charged %g tokens in all, want the 15 of its one ordinary request: %s", tokens, out)
			}
		}
	}
}

// rawHTTPCheck sends POST /v1/translate to the HTTP authorization listener
// with the given Content-Length header and bodyLen bytes of words (more
// than the listener reads), writing while it reads the answer, and returns
// the status, headers and body.
func rawHTTPCheck(t *testing.T, addr, contentLength string, bodyLen int) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		fmt.Fprintf(conn, "POST /v1/translate HTTP/1.1\r\nHost: api.example.com\r\nX-User-Id: demo-standard\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n", contentLength)
		chunk := []byte(strings.Repeat("word ", 1<<12))
		for n := 0; n < bodyLen; n += len(chunk) {
			if _, err := conn.Write(chunk); err != nil {
				return // the server answered and closed: that is the point
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
