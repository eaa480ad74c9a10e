package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
)

const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium with a fresh profile and returns a
// chromedp context for one tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run .ci/deps/chromium.sh (as root) to install Debian's chromium: %v", chromiumPath, err)
	}
	dir, err := os.MkdirTemp("", "quotagate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Chromium's children may still write there for a moment after it exits.
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 1000),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, outside any timeout
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// load charges requests through the real engine and reports them to the
// server, as the ext_authz server does per Check. It returns the id of the
// last rejection.
func load(t *testing.T, f *fixture, n int, every time.Duration) (lastRejected uuid.UUID) {
	t.Helper()
	for i := range n {
		now := f.clock.Now()
		d, err := f.eng.ChargeAt(context.Background(), now, engine.Request{Subject: fmt.Sprintf("user-%d", i%4)})
		if err != nil {
			t.Errorf("ChargeAt: %v", err)
			return
		}
		var trace [16]byte
		rand.Read(trace[:])
		f.srv.Observe(EventOf(&d, hex.EncodeToString(trace[:]), now))
		if !d.Allowed {
			lastRejected = d.ID
		}
		time.Sleep(every) // pacing the load so the chart has time to draw it
	}
	return lastRejected
}

// poller waits in the page for a JavaScript predicate to hold.
type poller func(what, expr string)

func newPoller(t *testing.T, ctx context.Context) poller {
	return func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}
}

func TestDashboardInChromium(t *testing.T) {
	const traceURL = "https://tempo.example/explore?traceId={trace_id}"
	f := newFixture(t, fixtureOpts{wallClock: true, every: 100 * time.Millisecond,
		cfg: Config{Tokens: testTokens(), TraceURL: traceURL}})
	ctx, cancel := context.WithTimeout(newBrowser(t), 60*time.Second)
	defer cancel()
	poll := newPoller(t, ctx)
	signIn(t, ctx, poll, f.url+"/dashboard/")

	var wg sync.WaitGroup
	var lastRejected uuid.UUID
	wg.Go(func() { lastRejected = load(t, f, 150, 15*time.Millisecond) })
	const points = `Array.from(document.querySelectorAll('#chart polyline')).map(p => p.getAttribute('data-series') + ':' + p.getAttribute('points')).join('|')`
	poll("decisions on the chart", `Number(document.getElementById('rate-now').dataset.total) > 0`)
	first, err := chromedp.Run(ctx, chromedp.Evaluate[string](points))
	if err != nil {
		t.Fatal(err)
	}
	poll("the chart to move", points+` !== `+jsString(first))
	poll("a rejection series", `document.querySelector('#chart polyline[data-series="freemium / window_exceeded"]') !== null`)
	wg.Wait()
	if lastRejected == uuid.Nil {
		t.Fatal("the load produced no rejection")
	}
	checkRejection(t, ctx, poll, lastRejected)
	poll("subjects at their limit", `document.querySelector('#top tbody').textContent.includes('user-')`)
	a := f.emitAlert(t, "user-1", "")
	poll("the alert", fmt.Sprintf(`document.querySelector('#alerts li[data-alert-id="%s"]') !== null`, a.ID))
	const health = `document.getElementById('health')`
	poll("the refused reload", `!`+health+`.hidden && `+health+`.textContent.includes(`+jsString(testConfigStatus.LastError)+`)`)
	f.degraded.Store("Redis does not answer")
	poll("the degraded server", health+`.textContent.includes('Degraded: Redis does not answer')`)
	screenshot(t, ctx)
}

// signIn tries a wrong token and a team token, which the dashboard
// refuses, then signs in with a read token and waits for the live stream.
func signIn(t *testing.T, ctx context.Context, poll poller, url string) {
	t.Helper()
	steps := []struct{ token, want string }{
		{"not-a-token", `document.getElementById('login-error').textContent.includes('unknown bearer token')`},
		{tokenSecret("blue-read"), `document.getElementById('login-error').textContent.includes('restricted to team')`},
		{tokenSecret("read"), `document.getElementById('status').textContent === 'live'`},
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	for _, st := range steps {
		err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), st.token), chromedp.Click(chromedp.ID("login-submit")))
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		poll("the answer to signing in", st.want)
	}
	poll("the tiers", `document.querySelector('#tiers tbody').textContent.includes('freemium (default)')`)
}

// checkRejection waits for the rejection id to be listed with its reason
// and a link to its trace.
func checkRejection(t *testing.T, ctx context.Context, poll poller, id uuid.UUID) {
	t.Helper()
	row := fmt.Sprintf(`document.querySelector('#rejections tr[data-decision-id="%s"]')`, id)
	poll("the last rejection", row+` !== null`)
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](row+`.querySelector('a').href`))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "https://tempo.example/explore?traceId="
	if !strings.HasPrefix(href, prefix) || len(href) != len(prefix)+32 {
		t.Errorf("the rejection links to %q; want the Tempo trace URL", href)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](row+`.textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, id.String()) || !strings.Contains(text, "window_exceeded") {
		t.Errorf("the rejection row reads %q; want its decision id and reason", text)
	}
}

// screenshot saves the page as a PNG in $ARTIFACTS_DIR, or in a temporary
// directory, and logs the path.
func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives a PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "admin-dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot: %s", path)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}

// visibleHidden lists the ids (or tag names) of elements that carry the
// hidden attribute but are laid out anyway, as a panel's display rule
// would make them.
const visibleHidden = `Array.from(document.querySelectorAll('[hidden]'))` +
	`.filter(e => getComputedStyle(e).display !== 'none' || e.getClientRects().length > 0)` +
	`.map(e => e.id || e.tagName).join(',')`

// shown lists the ids of the page's top-level panels that take up space.
const shown = `['login', 'board', 'health', 'logout'].filter(id => document.getElementById(id).getClientRects().length > 0).join(',')`

func TestDashboardHiddenMeansHidden(t *testing.T) {
	f := newFixture(t, fixtureOpts{wallClock: true, every: 100 * time.Millisecond,
		cfg: Config{Tokens: testTokens()}})
	ctx, cancel := context.WithTimeout(newBrowser(t), 60*time.Second)
	defer cancel()
	poll := newPoller(t, ctx)
	check := func(state, wantShown string) {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](visibleHidden))
		if err != nil {
			t.Fatal(err)
		}
		if got != "" {
			t.Errorf("%s: elements with the hidden attribute are displayed: %s", state, got)
		}
		if got, err = chromedp.Run(ctx, chromedp.Evaluate[string](shown)); err != nil {
			t.Fatal(err)
		} else if got != wantShown {
			t.Errorf("%s: the panels shown are %q, want %q", state, got, wantShown)
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(f.url+"/dashboard/"), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	check("signed out", "login")

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), tokenSecret("read")), chromedp.Click(chromedp.ID("login-submit"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	poll("the live stream", `document.getElementById('status').textContent === 'live'`)
	poll("the refused reload banner", `!document.getElementById('health').hidden`)
	check("signed in", "board,health,logout")

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout"))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	poll("the sign-in form", `!document.getElementById('login').hidden`)
	check("signed out again", "login")
}
