package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/notify"
	"github.com/quotagate/quotagate/telemetry/logtest"
)

var (
	_ Engine = (*engine.Engine)(nil)
	_ Ledger = (*ledger.Ledger)(nil)
	_ Alerts = (*notify.Notifier)(nil)
)

// t0 is the tests' starting time: mid-hour, so an hour window does not
// roll over while a test steps the clock by seconds.
var t0 = time.Date(2026, 11, 27, 10, 20, 0, 0, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	wall bool // follow time.Now, for tests with a browser
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wall {
		return time.Now()
	}
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var hour = engine.Period{Calendar: "hour", Every: time.Hour}

// engineRules has the example configuration's three tiers and two teams:
// alice is in blue, bob in green, carol (a configured user) in none. Any
// other subject is unknown until a profile is PUT for it.
func engineRules() engine.Rules {
	tier := func(p engine.Priority, perHour int64) engine.TierConfig {
		return engine.TierConfig{Priority: p, Limits: []engine.LimitConfig{{Period: hour, Max: perHour}}}
	}
	return engine.Rules{
		Tiers: map[engine.Tier]engine.TierConfig{
			"freemium":   tier(engine.PriorityLow, 10),
			"standard":   tier(engine.PriorityMedium, 100),
			"enterprise": tier(engine.PriorityHigh, 500),
		},
		Teams: map[string]engine.TeamConfig{
			"blue":  {Members: []string{"alice"}, Credits: 100},
			"green": {Members: []string{"bob"}},
		},
		Roles: map[string]engine.RoleConfig{"analyst": {}, "auditor": {}},
		Users: map[string]engine.UserConfig{"carol": {}},
	}
}

// recLedger is the real SQLite ledger, remembering the admin records
// appended through it, and failing appends while fail is set.
type recLedger struct {
	*ledger.Ledger
	mu    sync.Mutex
	admin []ledger.Record
	fail  bool
}

func (l *recLedger) Append(ctx context.Context, recs []ledger.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return errors.New("ledger: disk full (test)")
	}
	if err := l.Ledger.Append(ctx, recs); err != nil {
		return err
	}
	for _, r := range recs {
		if r.Kind == ledger.KindAdmin {
			l.admin = append(l.admin, r)
		}
	}
	return nil
}

func (l *recLedger) adminRecords() []ledger.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ledger.Record(nil), l.admin...)
}

func (l *recLedger) setFail(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = v
}

// tokenSecret is the bearer token of the configured token name.
func tokenSecret(name string) string { return "qg-test-" + name + "-7f3a9c1e5b" }

// testTokens are unrestricted tokens per scope, blue tokens per scope and
// one green admin token.
func testTokens() []TokenConfig {
	tok := func(name string, s Scope, team string) TokenConfig {
		return TokenConfig{Name: name, SHA256: HashToken(tokenSecret(name)), Scopes: []Scope{s}, Team: team}
	}
	return []TokenConfig{
		tok("read", ScopeRead, ""), tok("write", ScopeWrite, ""), tok("admin", ScopeAdmin, ""),
		tok("blue-read", ScopeRead, "blue"), tok("blue-write", ScopeWrite, "blue"), tok("blue-admin", ScopeAdmin, "blue"),
		tok("green-admin", ScopeAdmin, "green"),
	}
}

// testConfigStatus is what the fixture reports at GET /v1/config: one
// reload applied, then one refused.
var testConfigStatus = ConfigStatus{Source: "/etc/quotagate/quota.yaml", Generation: 1, Failures: 1,
	LastAttempt: time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC), LastSuccess: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
	LastError: "tiers.gold.api_calls_per_minute: must be positive"}

// fixture is a Server with a real engine, ledger and notifier, served on
// loopback.
type fixture struct {
	// degraded is what the server's Degraded reports (a string; unset:
	// not degraded).
	degraded atomic.Value
	srv      *Server
	eng      *engine.Engine
	led      *recLedger
	notif    *notify.Notifier
	clock    *clock
	url      string
	logs     *logtest.Buffer
	client   *http.Client
}

type fixtureOpts struct {
	cfg   Config
	every time.Duration
	// wallClock makes the fixture's clock follow time.Now.
	wallClock bool
	// store is the engine's Store; nil means the engine's in-memory one.
	store engine.Store
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(t0), logs: &logtest.Buffer{}}
	f.clock.wall = o.wallClock
	eng, err := engine.New(engineRules(), engine.Options{Now: f.clock.Now, Store: o.store})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	f.eng = eng
	led, err := ledger.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"), ledger.Options{})
	if err != nil {
		t.Fatalf("ledger.Open: %v", err)
	}
	t.Cleanup(func() { led.Close() })
	f.led = &recLedger{Ledger: led}
	f.notif, err = notify.New(notify.Config{Enabled: true, Channels: []notify.Channel{notify.ChannelDashboard}},
		notify.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatalf("notify.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.notif.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if o.cfg.Tokens == nil {
		o.cfg.Tokens = testTokens()
	}
	f.srv, err = New(Options{Config: o.cfg, Engine: eng, Ledger: f.led, Alerts: f.notif, Now: f.clock.Now,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil)), StreamInterval: o.every,
		ConfigStatus: func() ConfigStatus { return testConfigStatus },
		Degraded: func() string {
			v, _ := f.degraded.Load().(string)
			return v
		}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(f.srv.Handler())
	t.Cleanup(hs.Close)
	f.url, f.client = hs.URL, hs.Client()
	return f
}

// do sends a request with token (the secret; "" sends none) and returns
// the status and body. A 200 event stream is not read: its context is
// cancelled once the headers are in.
func (f *fixture) do(t *testing.T, method, path, body, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, ""
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// doJSON is do with a name for the token, decoding a JSON answer into v.
func (f *fixture) doJSON(t *testing.T, method, path, body, tokenName string, wantCode int, v any) {
	t.Helper()
	code, got := f.do(t, method, path, body, tokenSecret(tokenName))
	if code != wantCode {
		t.Fatalf("%s %s as %s = %d %s; want %d", method, path, tokenName, code, got, wantCode)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(got), v); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, got, err)
		}
	}
}

// emitAlert raises a threshold alert for subject in team and waits until
// the dashboard feed has it.
func (f *fixture) emitAlert(t *testing.T, subject, team string) notify.Alert {
	t.Helper()
	f.notif.Emit(engine.Event{Kind: engine.EventThreshold, Time: f.clock.Now(), Subject: subject, Team: team,
		Tier: "freemium", Window: t0.Truncate(time.Hour),
		Limit: engine.LimitStatus{Name: "hour", Period: hour, Limit: 10, Used: 9, Remaining: 1}})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range f.notif.Recent(0) {
			if a.Subject == subject {
				return a
			}
		}
		time.Sleep(5 * time.Millisecond) // waiting for the notifier's goroutine, not for a window
	}
	t.Fatalf("alert for %s never reached the dashboard feed", subject)
	return notify.Alert{}
}
