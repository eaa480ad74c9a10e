package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	// Addr is its loopback host:port.
	Addr string
	// Dir is its working directory, removed by Close.
	Dir  string
	args []string
	cmd  *exec.Cmd
	own  bool // Close removes Dir
}

// checkInstalled returns an error that says how to install the Redis
// programs when redis-server or redis-cli is missing.
func checkInstalled() error {
	for _, p := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("redistest: %s is not installed: run .ci/deps/redis.sh (as root) to install it: %w", p, err)
		}
	}
	return nil
}

// NewServer starts redis-server with extra arguments (such as
// "--cluster-enabled", "yes") on a free loopback port in a new temporary
// directory, and waits until it answers PING. The caller stops it with
// Close.
func NewServer(extra ...string) (*Server, error) {
	if err := checkInstalled(); err != nil {
		return nil, err
	}
	cluster := false
	for i, a := range extra {
		if a == "--cluster-enabled" && i+1 < len(extra) && extra[i+1] == "yes" {
			cluster = true
		}
	}
	port, err := freePort(cluster)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return nil, fmt.Errorf("redistest: make a directory: %w", err)
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, own: true}
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no",
		// A replica syncs at once, rather than after the default 5s
		// that a diskless primary waits for more replicas to join.
		"--repl-diskless-sync-delay", "0"}, extra...)
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// StartServer is NewServer for a test: a failure ends the test, and the
// test's cleanup stops the server.
func StartServer(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	s, err := NewServer(extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Start (re)starts a stopped server on its address and directory, and
// waits until it answers PING, for 10s at most.
func (s *Server) Start() error {
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	return waitPing(s.Addr)
}

// waitPing waits until addr answers PING, for 10s at most.
func waitPing(addr string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer within 10s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would, and waits
// for it to exit. Start brings it back.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Running reports whether the server was started and not killed.
func (s *Server) Running() bool { return s.cmd != nil }

// Close kills the server and removes its directory. It is idempotent.
func (s *Server) Close() {
	s.Kill()
	if s.own && s.Dir != "" {
		os.RemoveAll(s.Dir)
		s.Dir = ""
	}
}

// Client returns a plain client of the server; the caller closes it.
func (s *Server) Client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1})
}

// Do runs one command on the server within 5s.
func (s *Server) Do(args ...any) (any, error) {
	c := s.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// Info returns field of the INFO section section ("" when absent).
func (s *Server) Info(section, field string) (string, error) {
	c := s.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v, nil
		}
	}
	return "", nil
}

// writeFile writes a configuration file into dir.
func writeFile(dir, name, text string) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("redistest: write %s: %w", p, err)
	}
	return p, nil
}

// ReplicasOnline returns how many replicas of s are connected and synced
// (state=online in INFO replication).
func (s *Server) ReplicasOnline() int {
	c := s.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0
	}
	return strings.Count(text, "state=online")
}

// Pid returns the process id of the running server, or 0.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
