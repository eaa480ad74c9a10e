package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quotagate/quotagate/store/redis/redistest"
)

// server is a redis-server started by a test on a loopback port, with a
// throwaway directory and no persistence (see redistest).
type server struct {
	t testing.TB
	*redistest.Server
}

// startServer starts redis-server on a free loopback port; the test's
// cleanup stops it.
func startServer(t testing.TB) *server {
	t.Helper()
	return &server{t: t, Server: redistest.StartServer(t)}
}

func (s *server) addr() string { return s.Addr }

// start restarts a stopped redis-server and waits until it answers PING.
func (s *server) start() {
	s.t.Helper()
	if err := s.Start(); err != nil {
		s.t.Fatal(err)
	}
}

// stop kills redis-server and waits for it to exit.
func (s *server) stop() { s.Kill() }

// client returns a raw client for inspecting the server.
func (s *server) client(t *testing.T) *goredis.Client {
	c := s.Client()
	t.Cleanup(func() { c.Close() })
	return c
}

// open returns a Store on the server, closed at cleanup.
func (s *server) open(t testing.TB, opts Options) *Store {
	opts.Addr = s.addr()
	return openStore(t, opts)
}

// openStore returns a Store opened with opts, closed at cleanup.
func openStore(t testing.TB, opts Options) *Store {
	st, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
