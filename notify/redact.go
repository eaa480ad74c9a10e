package notify

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// redacted is what a secret prints as.
const redacted = "REDACTED"

// The channel settings hold resolved secrets as plain strings (the wiring
// takes them from the configuration file). These methods keep the secrets
// out of fmt, slog and JSON output, so a Config can be logged.

// webhookPlain is WebhookConfig without its methods.
type webhookPlain WebhookConfig

func (w WebhookConfig) redacted() webhookPlain {
	p := webhookPlain(w)
	if p.Secret != "" {
		p.Secret = redacted
	}
	return p
}

// String prints w with its secret redacted.
func (w WebhookConfig) String() string { return fmt.Sprintf("%+v", w.redacted()) }

// GoString is String, so that %#v does not print the secret either.
func (w WebhookConfig) GoString() string { return w.String() }

// LogValue logs w with its secret redacted.
func (w WebhookConfig) LogValue() slog.Value { return slog.AnyValue(w.redacted()) }

// MarshalJSON encodes w with its secret redacted.
func (w WebhookConfig) MarshalJSON() ([]byte, error) { return json.Marshal(w.redacted()) }

// emailPlain is EmailConfig without its methods.
type emailPlain EmailConfig

func (e EmailConfig) redacted() emailPlain {
	p := emailPlain(e)
	if p.Password != "" {
		p.Password = redacted
	}
	return p
}

// String prints e with its password redacted.
func (e EmailConfig) String() string { return fmt.Sprintf("%+v", e.redacted()) }

// GoString is String, so that %#v does not print the password either.
func (e EmailConfig) GoString() string { return e.String() }

// LogValue logs e with its password redacted.
func (e EmailConfig) LogValue() slog.Value { return slog.AnyValue(e.redacted()) }

// MarshalJSON encodes e with its password redacted.
func (e EmailConfig) MarshalJSON() ([]byte, error) { return json.Marshal(e.redacted()) }
