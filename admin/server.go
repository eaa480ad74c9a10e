package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/notify"
)

// ErrNoTokens is returned by New and Run when no token is configured and
// the address is not loopback.
var ErrNoTokens = errors.New("admin: no tokens configured")

// Engine is what the admin server needs of the engine; *engine.Engine
// implements it.
type Engine interface {
	Rules() engine.Rules
	SetCapacity(requestsPerSecond float64) error
	SetCapacityFactor(f float64) error
	Capacity() engine.CapacityStatus
	SetProfile(ctx context.Context, subject string, p engine.Profile) error
	ValidateProfile(subject string, p engine.Profile) error
	Known(ctx context.Context, subject string) (bool, error)
	PreviewCredits(ctx context.Context, key string, delta int64) (before, after int64, err error)
	Status(ctx context.Context, subject string) (engine.SubjectStatus, error)
	AddCredits(ctx context.Context, key string, delta int64) (balance int64, err error)
	Stats() engine.Stats
}

// Ledger is where admin changes are recorded and usage reports come from;
// *ledger.Ledger implements it. Append must have stored the records when it
// returns nil.
type Ledger interface {
	Append(ctx context.Context, recs []ledger.Record) error
	Usage(ctx context.Context, q ledger.Query) ([]ledger.Row, error)
}

// Alerts is the dashboard feed of alerts; *notify.Notifier implements it.
type Alerts interface {
	Recent(limit int) []notify.Alert
	Ack(id uuid.UUID) error
	Subscribe(ctx context.Context) <-chan notify.Alert
}

// Options are the dependencies of a Server.
type Options struct {
	// Config is the admin block of the configuration.
	Config Config
	// Engine is required.
	Engine Engine
	// Ledger records changes and serves usage reports. Nil refuses every
	// change (503): an unrecorded change is not allowed.
	Ledger Ledger
	// Alerts is the alert feed; nil shows none.
	Alerts Alerts
	// Logger receives auth failures and server errors; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// StreamInterval is how often the dashboard stream sends an update.
	// Zero means 1s.
	StreamInterval time.Duration
	// ConfigStatus reports the configuration's source and reload history
	// for GET /v1/config and the dashboard; nil answers 503.
	ConfigStatus func() ConfigStatus
	// Degraded says why the server is degraded (its shared store does not
	// answer, say), for the dashboard; "" means it is not. Nil means never.
	Degraded func() string
}

// Server is the admin HTTP server. It is safe for concurrent use.
type Server struct {
	cfg     Config
	eng     Engine
	led     Ledger
	alerts  Alerts
	config  func() ConfigStatus
	degrade func() string
	log     *slog.Logger
	now     func() time.Time
	every   time.Duration
	tokens  tokenSet
	open    bool // no tokens: loopback clients only, with admin scope
	// tokenFails counts failed authentications per presented token,
	// addrFails per client address (a much higher ceiling).
	tokenFails, addrFails *failLimiter
	live                  *live
	handler               http.Handler
	started               atomic.Bool
}

// New returns a Server for opts. It validates the configuration and
// refuses, with ErrNoTokens, to serve without tokens on an address that
// is not loopback. It starts no goroutines.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("admin: no engine given: Options.Engine is required")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	cfg := opts.Config.withDefaults()
	if len(cfg.Tokens) == 0 && cfg.Addr != "" && !IsLoopback(cfg.Addr) {
		return nil, noTokensError(cfg.Addr)
	}
	s := &Server{
		cfg:        cfg,
		eng:        opts.Engine,
		led:        opts.Ledger,
		alerts:     opts.Alerts,
		config:     opts.ConfigStatus,
		degrade:    opts.Degraded,
		log:        opts.Logger,
		now:        opts.Now,
		every:      opts.StreamInterval,
		tokens:     newTokenSet(cfg.Tokens),
		open:       len(cfg.Tokens) == 0,
		tokenFails: newFailLimiter(cfg.AuthFailuresPerMinute, authFailureWindow),
		addrFails:  newFailLimiter(cfg.AuthFailuresPerAddressPerMinute, authFailureWindow),
		live:       newLive(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.every <= 0 {
		s.every = defaultStreamInterval
	}
	s.handler = s.routes()
	return s, nil
}

func noTokensError(addr string) error {
	return fmt.Errorf("%w: refusing to serve the admin API on %s, which is not loopback: "+
		"add admin.tokens (name, sha256 of the token, scopes) or bind to 127.0.0.1", ErrNoTokens, addr)
}

// Handler returns the HTTP handler of the API, the dashboard, /healthz
// and /openapi.json. A caller that mounts it on its own listener is
// responsible for binding it to loopback when no tokens are configured;
// the handler then refuses clients that are not on loopback anyway.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on addr (Config.Addr when empty) until ctx is done, then shuts
// down, ending open dashboard streams. It uses TLS when configured.
func (s *Server) Run(ctx context.Context, addr string) error {
	if addr == "" {
		addr = s.cfg.Addr
	}
	if addr == "" {
		return errors.New("admin: no address: set admin.addr or --admin-addr")
	}
	if s.open && !IsLoopback(addr) {
		return noTokensError(addr)
	}
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("admin: already running")
	}
	defer s.started.Store(false)
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen on %s: %w", addr, err)
	}
	return s.serve(ctx, ln, tlsCfg)
}

// Serve is Run on a listener the caller opened (and Serve closes). It
// refuses a listener that is not on loopback when no tokens are configured.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.open && !IsLoopback(ln.Addr().String()) {
		ln.Close()
		return noTokensError(ln.Addr().String())
	}
	if !s.started.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("admin: already running")
	}
	defer s.started.Store(false)
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln, tlsCfg)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tlsCfg,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.log.Info("admin: serving", "addr", ln.Addr().String(), "tls", tlsCfg != nil, "tokens", len(s.cfg.Tokens))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	cancel() // ends the dashboard streams, which never go idle by themselves
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", err)
	}
	return nil
}

// tlsConfig loads the certificates named in the TLS config; nil means
// plain HTTP.
func (s *Server) tlsConfig() (*tls.Config, error) {
	c := s.cfg.TLS
	if c.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin: tls: load cert_file %s and key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("admin: tls: client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin: tls: client_ca_file %s holds no PEM certificate", c.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
