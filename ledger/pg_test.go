package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quotagate/quotagate/e2e/freeport"
)

// pgServer is a throwaway PostgreSQL server on a loopback port, started
// on first use by the tests of this package and stopped by TestMain.
type pgServer struct {
	bin  string // directory of initdb and pg_ctl
	dir  string // owns data/, the socket and the log
	port int
	asPG bool // running as root: run the binaries as the postgres user
}

var (
	pgOnce sync.Once
	pg     *pgServer
	pgErr  error
	pgDBs  atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.stop()
	}
	if benchLedger.l != nil {
		benchLedger.l.Close()
	}
	if benchLedger.dir != "" {
		os.RemoveAll(benchLedger.dir)
	}
	os.Exit(code)
}

// postgresDSN returns the DSN of a new, empty schema (its search_path)
// on the shared server, starting the server on first use. Schemas are
// much cheaper to create than databases.
func postgresDSN(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = startPostgres() })
	if pgErr != nil {
		t.Fatalf("postgres: %v", pgErr)
	}
	name := fmt.Sprintf("ledger_test_%d", pgDBs.Add(1))
	admin, err := sql.Open("pgx", pg.dsn(""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + name); err != nil {
		t.Fatalf("postgres: create schema %s: %v", name, err)
	}
	return pg.dsn(name)
}

func (s *pgServer) dsn(schema string) string {
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if schema != "" {
		dsn += "&search_path=" + schema
	}
	return dsn
}

func findPostgresBin() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	for _, m := range matches {
		bin := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(bin, "initdb")); err == nil {
			return bin, nil
		}
	}
	return "", fmt.Errorf("initdb and pg_ctl not found under /usr/lib/postgresql/*/bin: run .ci/deps/postgres.sh (as root) to install PostgreSQL")
}

func startPostgres() (*pgServer, error) {
	bin, err := findPostgresBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "quotagate-ledger-pg-*")
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, dir: dir, asPG: os.Geteuid() == 0}
	if s.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user (created by .ci/deps/postgres.sh): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if s.port, err = freeport.Port(); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off", s.port, dir)
	if out, err := s.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return s, nil
}

func (s *pgServer) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asPG {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func (s *pgServer) stop() {
	s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(s.dir)
}

// backends runs fn once per back end, each with a fresh, empty ledger DSN.
func backends(t *testing.T, fn func(t *testing.T, dsn func() string)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func() string { return filepath.Join(t.TempDir(), "ledger.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, func() string { return postgresDSN(t) })
	})
}

func openLedger(t testing.TB, dsn string) *Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
