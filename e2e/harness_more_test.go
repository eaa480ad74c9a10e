package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

// proc is an external process a test started (a proxy, or a second
// quotagate run). It runs in its own process group, which is killed when
// the test ends (nginx's workers outlive a killed master otherwise), and
// its output is logged if the test failed.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *logtest.Buffer
	exited  chan struct{}
	exitErr error
}

// startProc starts cmd with its stdout and stderr captured.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &logtest.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// waitTCP waits until addr accepts connections, failing the test if p
// exits first or within passes.
func (p *proc) waitTCP(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, addr, p.exitErr, p.out)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v\n%s", p.name, addr, within, err, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upstreamRequest is what the API behind a proxy received.
type upstreamRequest struct {
	method, uri string
	header      http.Header
	body        string
}

// upstream is a small API server that records every request it gets. It
// is safe for concurrent use.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []upstreamRequest
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, upstreamRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: string(body)})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "upstream ok\n")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// addr is the upstream's host:port.
func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// count is the number of requests the upstream has received.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// last returns the most recent request the upstream received.
func (u *upstream) last(t *testing.T) upstreamRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// repoRoot is the module root, the parent of the e2e directory tests run
// in.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// findTool returns the first executable among candidates (absolute paths,
// or names looked up in PATH), or fails the test naming the .ci/deps
// script that installs it.
func findTool(t *testing.T, script string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return c
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatalf("none of %s is installed; run `bash .ci/deps/%s` (make test-deps runs it)", strings.Join(candidates, ", "), script)
	return ""
}

// markdownBlock returns the first fenced code block of the given language
// in the markdown file at path, so that a test runs the recipe the docs
// show rather than a copy of it.
func markdownBlock(t *testing.T, path, lang string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "```"+lang+"\n")
	if start < 0 {
		t.Fatalf("%s has no ```%s block", path, lang)
	}
	text = text[start+len("```"+lang+"\n"):]
	end := strings.Index(text, "```")
	if end < 0 {
		t.Fatalf("%s: the ```%s block is not closed", path, lang)
	}
	return text[:end]
}
