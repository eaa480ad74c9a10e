package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"text/template"
	"time"
)

// mailer sends alerts by SMTP, one connection per message.
type mailer struct {
	addr      string
	host      string
	tlsMode   TLSMode
	tlsConfig *tls.Config
	username  string
	password  string
	from      string
	operators []string
	users     map[string]string
	userTmpl  string
	upgrade   string
	now       func() time.Time
	tmpl      *template.Template
}

// message is one rendered email.
type message struct {
	to      []string
	subject string
	body    string
	msgID   string
}

func newMailer(c EmailConfig, password string, tlsConfig *tls.Config, now func() time.Time) (*mailer, error) {
	host, _, err := net.SplitHostPort(c.SMTPAddr)
	if err != nil {
		return nil, fmt.Errorf("notify: email.smtp_addr %q: %w", c.SMTPAddr, err)
	}
	var tc *tls.Config
	if tlsConfig != nil {
		tc = tlsConfig.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return &mailer{
		addr:      c.SMTPAddr,
		host:      host,
		tlsMode:   c.StartTLS,
		tlsConfig: tc,
		username:  c.Username,
		password:  password,
		from:      c.From,
		operators: c.ToOperators,
		users:     c.UserAddresses,
		userTmpl:  c.UserAddressTemplate,
		upgrade:   c.UpgradeURL,
		now:       now,
		tmpl:      emailTemplates,
	}, nil
}

// messages renders a's emails: one to the user for user-facing kinds when
// the user has an address, and one to the operators.
func (m *mailer) messages(a Alert) ([]message, error) {
	data := templateData{Alert: a, UpgradeURL: m.upgrade, PeriodAdjective: a.periodAdjective()}
	var out []message
	if to, ok := m.userAddress(a.Subject); ok && a.Kind.userFacing() {
		msg, err := m.render("user", data, []string{to})
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	if len(m.operators) > 0 {
		msg, err := m.render("operator", data, m.operators)
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, nil
}

func (m *mailer) render(audience string, data templateData, to []string) (message, error) {
	var subj, body strings.Builder
	if err := m.tmpl.ExecuteTemplate(&subj, audience+"_subject", data); err != nil {
		return message{}, fmt.Errorf("notify: email %s subject: %w", audience, err)
	}
	if err := m.tmpl.ExecuteTemplate(&body, audience+"_body", data); err != nil {
		return message{}, fmt.Errorf("notify: email %s body: %w", audience, err)
	}
	domain := m.from[strings.LastIndexByte(m.from, '@')+1:]
	return message{
		to:      to,
		subject: strings.Join(strings.Fields(subj.String()), " "),
		body:    body.String(),
		msgID:   fmt.Sprintf("<%s.%s@%s>", data.ID, audience, domain),
	}, nil
}

// userAddress returns the address of subject's user, if it has one.
func (m *mailer) userAddress(subject string) (string, bool) {
	if subject == "" {
		return "", false
	}
	if a, ok := m.users[subject]; ok {
		return a, true
	}
	if m.userTmpl == "" {
		return "", false
	}
	a := strings.ReplaceAll(m.userTmpl, "{subject}", subject)
	return a, validAddress(a)
}

// send delivers msg in one SMTP session: STARTTLS (unless disabled), AUTH
// PLAIN (when a username is set), MAIL, RCPT, DATA. SMTP 5xx answers are
// permanent errors.
func (m *mailer) send(ctx context.Context, msg message) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("notify: smtp dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		conn.Close()
		return classify("greeting", err)
	}
	defer c.Close()
	if err := m.handshake(c); err != nil {
		return err
	}
	if err := c.Mail(m.from); err != nil {
		return classify("MAIL FROM", err)
	}
	for _, to := range msg.to {
		if err := c.Rcpt(to); err != nil {
			return classify("RCPT TO", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(m.compose(msg)); err != nil {
		return classify("DATA", err)
	}
	if err := w.Close(); err != nil {
		return classify("DATA", err)
	}
	_ = c.Quit()
	return nil
}

// handshake does STARTTLS and AUTH as configured.
func (m *mailer) handshake(c *smtp.Client) error {
	if m.tlsMode == TLSRequired {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanentError{fmt.Errorf("notify: smtp server %s does not offer STARTTLS: enable it there, or set email.starttls to \"disabled\" for a loopback relay", m.addr)}
		}
		if err := c.StartTLS(m.tlsConfig); err != nil {
			return fmt.Errorf("notify: smtp STARTTLS: %w", err)
		}
	}
	if m.username == "" {
		return nil
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		return permanentError{fmt.Errorf("notify: smtp server %s does not offer AUTH, but email.username is set", m.addr)}
	}
	if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
		return classify("AUTH", err)
	}
	return nil
}

// classify wraps an SMTP error, marking 5xx answers permanent.
func classify(step string, err error) error {
	wrapped := fmt.Errorf("notify: smtp %s: %w", step, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanentError{wrapped}
	}
	return wrapped
}

// compose writes the headers and quoted-printable body of msg.
func (m *mailer) compose(msg message) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", m.from)
	hdr("To", strings.Join(msg.to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", msg.subject))
	hdr("Date", m.now().Format(time.RFC1123Z))
	hdr("Message-ID", msg.msgID)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(msg.body))
	_ = qp.Close()
	return b.Bytes()
}
