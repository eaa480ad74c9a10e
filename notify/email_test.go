package notify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/quotagate/quotagate/engine"
)

const (
	smtpUser     = "quotagate"
	smtpPassword = "smtp-pa55word"
)

// received is one message as the test SMTP server got it.
type received struct {
	from    string
	to      []string
	tls     bool // STARTTLS was in effect for MAIL FROM
	user    string
	subject string
	header  mail.Header
	body    string
}

// smtpServer is a real SMTP server (go-smtp) on loopback that requires
// AUTH PLAIN with smtpUser and smtpPassword, offers STARTTLS when given a
// certificate, and records each message.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	msgs []received
}

func newSMTPServer(t *testing.T, cert *tls.Certificate) *smtpServer {
	t.Helper()
	s := &smtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{server: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	} else {
		srv.AllowInsecureAuth = true // a loopback relay without TLS
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *smtpServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type smtpSession struct {
	server *smtpServer
	conn   *smtp.Conn
	user   string
	msg    received
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		if user != smtpUser || password != smtpPassword {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.msg = received{from: from, tls: isTLS, user: s.user}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		return err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		return err
	}
	s.msg.header, s.msg.subject, s.msg.body = m.Header, subject, string(body)
	s.server.mu.Lock()
	s.server.msgs = append(s.server.msgs, s.msg)
	s.server.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.msg = received{} }
func (s *smtpSession) Logout() error { return nil }

// testCert returns a self-signed certificate for 127.0.0.1, made for this
// test run, and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quotagate test smtp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func emailConfig(addr string) Config {
	return Config{
		Enabled:  true,
		Channels: []Channel{ChannelEmail, ChannelDashboard},
		Email: EmailConfig{
			SMTPAddr:            addr,
			Username:            smtpUser,
			PasswordEnv:         "QG_SMTP_PASSWORD",
			From:                "quotagate@example.com",
			ToOperators:         []string{"ops@example.com", "oncall@example.com"},
			UserAddresses:       map[string]string{"alice": "alice@example.org"},
			UserAddressTemplate: "{subject}@users.example.com",
			UpgradeURL:          "https://example.com/upgrade",
			MaxRetries:          1,
			Backoff:             time.Millisecond,
			MaxBackoff:          2 * time.Millisecond,
		},
	}
}

func smtpEnv(name string) string {
	if name == "QG_SMTP_PASSWORD" {
		return smtpPassword
	}
	return ""
}

func TestEmailDelivery(t *testing.T) {
	cert, pool := testCert(t)
	type want struct {
		to      []string
		subject string
		body    []string // substrings
	}
	ops := []string{"ops@example.com", "oncall@example.com"}
	tests := []struct {
		name  string
		raise func(n *Notifier)
		want  []want
	}{
		{
			name:  "threshold: the user (listed address) and the operators",
			raise: func(n *Notifier) { n.Emit(event(engine.EventThreshold, "alice", t0)) },
			want: []want{
				{[]string{"alice@example.org"}, "Approaching daily limit.", []string{
					"Approaching daily limit.",
					`You have used 90 of 100 (90%) of your daily limit "day". It resets at 2026-11-28 10:00 UTC.`,
					"Upgrade your plan for higher limits: https://example.com/upgrade",
				}},
				{ops, "[quotagate] threshold: alice day (90%)", []string{
					"Approaching daily limit.", "Subject:  alice", "Tier:     freemium",
					"Limit:    day (day): 90 of 100 used (90%), 10 remaining",
					"Decision: 0193a5b4-0000-7000-8000-000000000001",
				}},
			},
		},
		{
			name:  "breach: the user (templated address) gets the default text and the upgrade link",
			raise: func(n *Notifier) { n.Emit(event(engine.EventBreach, "bob", t0)) },
			want: []want{
				{[]string{"bob@users.example.com"}, "Quota exceeded. Upgrade your plan or wait for the reset.", []string{
					"Quota exceeded. Upgrade your plan or wait for the reset.",
					"https://example.com/upgrade",
				}},
				{ops, "[quotagate] breach: bob day (100%)", []string{"Limit:    day (day): 100 of 100 used (100%), 0 remaining"}},
			},
		},
		{
			name: "a subject that would inject a header gets no user email",
			raise: func(n *Notifier) {
				n.Emit(event(engine.EventBreach, "eve\r\nBcc: mallory@evil.example", t0))
			},
			want: []want{{ops, "[quotagate] breach: eve Bcc: mallory@evil.example day (100%)", nil}},
		},
		{
			name: "an anomaly goes to the operators only",
			raise: func(n *Notifier) {
				for m := range 3 {
					n.Observe("alice", "standard", t0.Add(time.Duration(m)*time.Minute))
				}
				for range 10 {
					n.Observe("alice", "standard", t0.Add(3*time.Minute))
				}
			},
			want: []want{{ops, "[quotagate] anomaly: alice", []string{
				"Unusually high request rate.", "Requests: 3 this window, baseline 1 per window",
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSMTPServer(t, &cert)
			cfg := emailConfig(srv.addr)
			cfg.Anomaly = AnomalyConfig{Enabled: true, Window: time.Minute, Factor: 2, MinRate: 0.01, WarmUp: 1}
			var logs bytes.Buffer
			n := newNotifier(t, cfg, Options{
				Getenv: smtpEnv, SMTPTLS: &tls.Config{RootCAs: pool},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			tt.raise(n)
			start(t, n)()

			got := srv.messages()
			if len(got) != len(tt.want) {
				t.Fatalf("server got %d messages, want %d (logs:\n%s)", len(got), len(tt.want), logs.String())
			}
			for i, w := range tt.want {
				m := got[i]
				if !m.tls || m.user != smtpUser || m.from != "quotagate@example.com" {
					t.Errorf("message %d: tls=%v user=%q from=%q, want STARTTLS, AUTH as %q, from quotagate@example.com",
						i, m.tls, m.user, m.from, smtpUser)
				}
				if !slices.Equal(m.to, w.to) {
					t.Errorf("message %d: recipients = %q, want %q", i, m.to, w.to)
				}
				if m.subject != w.subject {
					t.Errorf("message %d: subject = %q, want %q", i, m.subject, w.subject)
				}
				for _, s := range w.body {
					if !strings.Contains(m.body, s) {
						t.Errorf("message %d: body lacks %q:\n%s", i, s, m.body)
					}
				}
				if len(m.header["Bcc"]) > 0 || m.header.Get("Message-Id") == "" {
					t.Errorf("message %d: headers = %v, want a Message-ID and no Bcc", i, m.header)
				}
			}
			if s := n.Stats().Channels["email"]; s.Sent != uint64(len(tt.want)) || s.Failed != 0 {
				t.Errorf("email stats = %+v, want %d sent and none failed", s, len(tt.want))
			}
			if strings.Contains(logs.String(), smtpPassword) {
				t.Errorf("the SMTP password appears in the logs:\n%s", logs.String())
			}
		})
	}
}

func TestEmailToLoopbackRelayWithoutTLS(t *testing.T) {
	srv := newSMTPServer(t, nil)
	cfg := emailConfig(srv.addr)
	cfg.Email.StartTLS = TLSDisabled
	n := newNotifier(t, cfg, Options{Getenv: smtpEnv})
	n.Emit(event(engine.EventThreshold, "alice", t0))
	start(t, n)()
	got := srv.messages()
	if len(got) != 2 || got[0].tls || got[0].user != smtpUser {
		t.Fatalf("messages = %+v, want 2, sent in clear text after AUTH", got)
	}
}

func TestEmailFailures(t *testing.T) {
	cert, pool := testCert(t)
	tests := []struct {
		name     string
		withTLS  bool // the server offers STARTTLS
		password string
		roots    *x509.CertPool
		want     ChannelStats
		log      string
	}{
		{
			name: "a wrong password is permanent", withTLS: true, password: "wrong", roots: pool,
			want: ChannelStats{Failed: 2, DeadLettered: 2}, log: "535",
		},
		{
			name: "a server without STARTTLS is refused", password: smtpPassword, roots: pool,
			want: ChannelStats{Failed: 2, DeadLettered: 2}, log: "does not offer STARTTLS",
		},
		{
			name: "an untrusted certificate is retried, then dead-lettered", withTLS: true, password: smtpPassword,
			want: ChannelStats{Failed: 4, Retried: 2, DeadLettered: 2}, log: "certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *tls.Certificate
			if tt.withTLS {
				c = &cert
			}
			srv := newSMTPServer(t, c)
			var logs bytes.Buffer
			n := newNotifier(t, emailConfig(srv.addr), Options{
				Getenv:  func(string) string { return tt.password },
				SMTPTLS: &tls.Config{RootCAs: tt.roots},
				Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
			})
			n.Emit(event(engine.EventBreach, "alice", t0))
			start(t, n)()
			if got := n.Stats().Channels["email"]; got != tt.want {
				t.Errorf("email stats = %+v, want %+v", got, tt.want)
			}
			if got := srv.messages(); len(got) != 0 {
				t.Errorf("server accepted %d messages, want none", len(got))
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("logs lack %q:\n%s", tt.log, logs.String())
			}
			if strings.Contains(logs.String(), tt.password) {
				t.Errorf("the SMTP password appears in the logs:\n%s", logs.String())
			}
		})
	}
}

func TestEmailComposeEncodesSubject(t *testing.T) {
	m := &mailer{from: "quotagate@example.com", now: fixedNow}
	raw := m.compose(message{to: []string{"ops@example.com"}, subject: "Überschreitung: 100 %", body: "line one\nline two\n", msgID: "<x@example.com>"})
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("compose wrote an unparsable message: %v\n%s", err, raw)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != "Überschreitung: 100 %" {
		t.Errorf("subject = %q, %v; want it to round-trip", subject, err)
	}
	if d, err := msg.Header.Date(); err != nil || !d.Equal(t0) {
		t.Errorf("Date = %v, %v; want the clock's %v", d, err, t0)
	}
	if _, err := mail.ParseAddressList(msg.Header.Get("To")); err != nil {
		t.Errorf("To: %v", err)
	}
	var perm permanentError
	if !errors.As(classify("RCPT TO", &textprotoError550), &perm) {
		t.Error("classify does not mark a 550 permanent")
	}
}

var textprotoError550 = textproto.Error{Code: 550, Msg: "no such user"}
