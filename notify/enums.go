package notify

import (
	"fmt"
	"strings"

	"github.com/quotagate/quotagate/engine"
)

// Channel is a delivery channel. The zero value is not a channel.
type Channel int

const (
	ChannelWebhook Channel = iota + 1
	ChannelEmail
	ChannelDashboard
)

var channelNames = [...]string{ChannelWebhook: "webhook", ChannelEmail: "email", ChannelDashboard: "dashboard"}

// String returns the channel's config name: "webhook", "email" or "dashboard".
func (c Channel) String() string {
	if c <= 0 || int(c) >= len(channelNames) {
		return fmt.Sprintf("Channel(%d)", int(c))
	}
	return channelNames[c]
}

// ParseChannel parses "webhook", "email" or "dashboard".
func ParseChannel(s string) (Channel, error) {
	for i, n := range channelNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Channel(i), nil
		}
	}
	return 0, fmt.Errorf("notify: unknown channel %q: want webhook, email or dashboard", s)
}

// MarshalText writes the channel's name.
func (c Channel) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a channel name.
func (c *Channel) UnmarshalText(b []byte) error {
	v, err := ParseChannel(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// TLSMode says whether SMTP must use STARTTLS. The zero value is
// TLSRequired.
type TLSMode int

const (
	// TLSRequired refuses to send unless the server offers STARTTLS and the
	// certificate verifies.
	TLSRequired TLSMode = iota
	// TLSDisabled sends in clear text; AUTH is then only allowed to a
	// server on loopback.
	TLSDisabled
)

// String returns "required" or "disabled".
func (m TLSMode) String() string {
	switch m {
	case TLSRequired:
		return "required"
	case TLSDisabled:
		return "disabled"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ParseTLSMode parses "required" or "disabled".
func ParseTLSMode(s string) (TLSMode, error) {
	switch strings.ToLower(s) {
	case "required", "":
		return TLSRequired, nil
	case "disabled":
		return TLSDisabled, nil
	}
	return 0, fmt.Errorf("notify: unknown starttls mode %q: want required or disabled", s)
}

// MarshalText writes the mode's name.
func (m TLSMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses a mode name.
func (m *TLSMode) UnmarshalText(b []byte) error {
	v, err := ParseTLSMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Kind classifies an Alert.
type Kind int

const (
	// KindThreshold: usage reached the alert threshold of a limit.
	KindThreshold Kind = iota + 1
	// KindBreach: a request was refused by a limit.
	KindBreach
	// KindBalanceLow: a token balance fell below the threshold of its grant.
	KindBalanceLow
	// KindInsufficientBalance: a request was refused for lack of tokens.
	KindInsufficientBalance
	// KindAnomaly: a subject's request rate is far above its own baseline.
	KindAnomaly
)

var kindNames = [...]string{
	KindThreshold:           "threshold",
	KindBreach:              "breach",
	KindBalanceLow:          "balance_low",
	KindInsufficientBalance: "insufficient_balance",
	KindAnomaly:             "anomaly",
}

// String returns the kind's stable snake_case name.
func (k Kind) String() string {
	if k <= 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// ParseKind parses a name returned by Kind.String.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if i > 0 && s == n {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("notify: unknown alert kind %q", s)
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// kindOf maps an engine event kind to an alert kind; 0 means unknown.
func kindOf(k engine.EventKind) Kind {
	switch k {
	case engine.EventThreshold:
		return KindThreshold
	case engine.EventBreach:
		return KindBreach
	case engine.EventBalanceLow:
		return KindBalanceLow
	case engine.EventInsufficientBalance:
		return KindInsufficientBalance
	}
	return 0
}

// userFacing reports whether alerts of kind k are sent to the user as well
// as to operators.
func (k Kind) userFacing() bool { return k != KindAnomaly }
