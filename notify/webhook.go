package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Header names of a webhook delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body,
	// keyed with the webhook secret.
	SignatureHeader = "X-Quotagate-Signature"
	// TimestampHeader carries the Unix time, in seconds, of the attempt.
	TimestampHeader = "X-Quotagate-Timestamp"
	// DeliveryHeader carries the alert id, the same on every retry.
	DeliveryHeader = "X-Quotagate-Delivery"
)

// webhook posts alerts as signed JSON.
type webhook struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// Sign returns the value of SignatureHeader for body under secret:
// "sha256=" followed by the hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports, in constant time, whether header is the
// signature of body under secret. Receivers of webhooks may use it.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(secret, body)))
}

// send posts body once. Network errors, timeouts, 408, 429 and 5xx answers
// are worth retrying; other non-2xx answers are permanent.
func (h *webhook) send(ctx context.Context, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("notify: webhook request: %w", stripURL(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "quotagate-notify")
	req.Header.Set(SignatureHeader, Sign(h.secret, body))
	req.Header.Set(TimestampHeader, strconv.FormatInt(h.now().Unix(), 10))
	req.Header.Set(DeliveryHeader, id)
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("notify: webhook post: %w", stripURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("notify: webhook answered %s", resp.Status)
	default:
		return permanentError{fmt.Errorf("notify: webhook answered %s", resp.Status)}
	}
}

// stripURL drops the URL from a *url.Error, since webhook URLs often carry
// a token in their path or query.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// defaultHTTPClient does not follow redirects: a redirected POST would turn
// into a GET, or carry the signed body somewhere unexpected.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
