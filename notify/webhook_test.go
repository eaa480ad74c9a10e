package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
)

const testSecret = "s3cret-webhook-key"

// hookServer is a real webhook receiver on loopback that answers with the
// given status codes in turn (the last one repeats) and records every
// request.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	codes    []int
	requests []hookRequest
}

type hookRequest struct {
	header http.Header
	body   []byte
}

func newHookServer(t *testing.T, codes ...int) *hookServer {
	t.Helper()
	h := &hookServer{codes: codes}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		code := h.codes[min(len(h.requests), len(h.codes)-1)]
		h.requests = append(h.requests, hookRequest{r.Header.Clone(), body})
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) received() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.requests...)
}

func webhookConfig(url string, maxRetries int) Config {
	return Config{
		Enabled:  true,
		Channels: []Channel{ChannelWebhook},
		Webhook: WebhookConfig{
			URL: url, SecretEnv: "QG_WEBHOOK_SECRET", MaxRetries: maxRetries,
			Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		},
	}
}

func getenv(name string) string {
	if name == "QG_WEBHOOK_SECRET" {
		return testSecret
	}
	return ""
}

func TestWebhookDelivery(t *testing.T) {
	tests := []struct {
		name     string
		codes    []int
		retries  int
		attempts int
		want     ChannelStats
	}{
		{"first attempt succeeds", []int{204}, 3, 1, ChannelStats{Sent: 1}},
		{"fails twice, then succeeds", []int{500, 503, 200}, 3, 3, ChannelStats{Sent: 1, Failed: 2, Retried: 2}},
		{"429 and 408 are retried", []int{429, 408, 202}, 3, 3, ChannelStats{Sent: 1, Failed: 2, Retried: 2}},
		{"dead-lettered after the last retry", []int{500}, 2, 3, ChannelStats{Failed: 3, Retried: 2, DeadLettered: 1}},
		{"a permanent error is not retried", []int{400}, 3, 1, ChannelStats{Failed: 1, DeadLettered: 1}},
		{"a redirect is not followed", []int{302}, 3, 1, ChannelStats{Failed: 1, DeadLettered: 1}},
		{"no retries when disabled", []int{500}, -1, 1, ChannelStats{Failed: 1, DeadLettered: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newHookServer(t, tt.codes...)
			var logs bytes.Buffer
			n := newNotifier(t, webhookConfig(srv.URL+"/hooks/quota", tt.retries), Options{
				Getenv: getenv,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			ev := event(engine.EventBreach, "alice", t0)
			n.Emit(ev)
			start(t, n)()

			reqs := srv.received()
			if len(reqs) != tt.attempts {
				t.Fatalf("server got %d requests, want %d", len(reqs), tt.attempts)
			}
			if got := n.Stats().Channels["webhook"]; got != tt.want {
				t.Errorf("webhook stats = %+v, want %+v", got, tt.want)
			}
			for i, r := range reqs {
				checkSignedDelivery(t, r, reqs[0].header.Get(DeliveryHeader))
				if !bytes.Equal(r.body, reqs[0].body) {
					t.Errorf("attempt %d sent another body than the first", i)
				}
			}
			var a Alert
			if err := json.Unmarshal(reqs[0].body, &a); err != nil {
				t.Fatalf("payload is not an Alert: %v\n%s", err, reqs[0].body)
			}
			if a.Kind != KindBreach || a.Subject != "alice" || a.Limit != "day" || a.Used != 100 ||
				a.DecisionID != ev.DecisionID || a.Message != "Quota exceeded. Upgrade your plan or wait for the reset." {
				t.Errorf("payload = %+v, want alice's breach of her daily limit", a)
			}
			if strings.Contains(logs.String(), testSecret) {
				t.Errorf("the webhook secret appears in the logs:\n%s", logs.String())
			}
		})
	}
}

// checkSignedDelivery verifies r's signature independently of Sign, and
// its timestamp and delivery id.
func checkSignedDelivery(t *testing.T, r hookRequest, id string) {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write(r.body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.header.Get(SignatureHeader); got != want {
		t.Errorf("%s = %q, want %q", SignatureHeader, got, want)
	}
	if !VerifySignature([]byte(testSecret), r.body, r.header.Get(SignatureHeader)) {
		t.Error("VerifySignature rejects a good signature")
	}
	if VerifySignature([]byte("another key"), r.body, r.header.Get(SignatureHeader)) {
		t.Error("VerifySignature accepts a signature under another key")
	}
	if got := r.header.Get(TimestampHeader); got != strconv.FormatInt(t0.Unix(), 10) {
		t.Errorf("%s = %q, want the clock's Unix time %d", TimestampHeader, got, t0.Unix())
	}
	if got := r.header.Get(DeliveryHeader); got == "" || got != id {
		t.Errorf("%s = %q, want the alert id %q on every attempt", DeliveryHeader, got, id)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

func TestWebhookUnreachable(t *testing.T) {
	srv := newHookServer(t, 200)
	url := srv.URL + "/hook?token=hidden"
	srv.Close() // nothing listens at url any more
	var logs bytes.Buffer
	n := newNotifier(t, webhookConfig(url, 1), Options{
		Getenv: getenv,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	n.Emit(event(engine.EventThreshold, "alice", t0))
	start(t, n)()
	if got, want := n.Stats().Channels["webhook"], (ChannelStats{Failed: 2, Retried: 1, DeadLettered: 1}); got != want {
		t.Errorf("webhook stats = %+v, want %+v", got, want)
	}
	if !strings.Contains(logs.String(), "dead-lettered") || strings.Contains(logs.String(), "token=hidden") {
		t.Errorf("logs should report the dead letter without the URL's token:\n%s", logs.String())
	}
}

func TestWebhookQueueIsBounded(t *testing.T) {
	srv := newHookServer(t, 200)
	cfg := webhookConfig(srv.URL, 0)
	cfg.QueueSize = 2
	n := newNotifier(t, cfg, Options{Getenv: getenv})
	for i := range 5 {
		n.Emit(event(engine.EventThreshold, "alice", t0.Add(time.Duration(i)*24*time.Hour)))
	}
	start(t, n)()
	s := n.Stats()
	if s.Dropped != 3 || s.Channels["webhook"].Sent != 2 {
		t.Errorf("Stats = %+v, want 3 dropped at Emit and 2 sent", s)
	}
	if got := len(srv.received()); got != 2 {
		t.Errorf("server got %d deliveries, want 2", got)
	}
}

func TestRetryWait(t *testing.T) {
	p := retryPolicy{maxRetries: 10, backoff: 100 * time.Millisecond, maxBackoff: time.Second}
	tests := []struct {
		name     string
		retry    int
		min, max time.Duration
	}{
		{"first retry", 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{"doubles", 1, 100 * time.Millisecond, 200 * time.Millisecond},
		{"doubles again", 2, 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", 8, 500 * time.Millisecond, time.Second},
		{"capped far out", 1000, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := p.wait(tt.retry)
				if d < tt.min || d > tt.max {
					t.Fatalf("wait(%d) = %v, want within [%v, %v]", tt.retry, d, tt.min, tt.max)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("wait(%d) has no jitter: always %v", tt.retry, seen)
			}
		})
	}
}

func TestCancelAbandonsRetries(t *testing.T) {
	hit := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		hit <- struct{}{}
	}))
	defer srv.Close()
	cfg := webhookConfig(srv.URL, 5)
	cfg.Webhook.Backoff, cfg.Webhook.MaxBackoff = time.Hour, time.Hour
	n := newNotifier(t, cfg, Options{Getenv: getenv})
	n.Emit(event(engine.EventBreach, "alice", t0))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	select {
	case <-hit:
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was never called")
	}
	cancel() // while the worker waits an hour to retry
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if got, want := n.Stats().Channels["webhook"], (ChannelStats{Failed: 1, Dropped: 1}); got != want {
		t.Errorf("webhook stats = %+v, want %+v", got, want)
	}
}
