package engine

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on.
var (
	ErrUnknownTier    = errors.New("engine: unknown tier")
	ErrInvalidConfig  = errors.New("engine: invalid config")
	ErrTooManyLimits  = errors.New("engine: too many limits for one request")
	ErrUnknownSubject = errors.New("engine: unknown subject")
	ErrClosed         = errors.New("engine: closed")
)

// Engine decides and charges requests. It is safe for concurrent use.
type Engine struct {
	// TODO(engine helper): implement.
}

// New returns an Engine for cfg. It starts no goroutines; call Run for
// periodic flushing.
func New(cfg Config) (*Engine, error) { return nil, errors.New("engine: not implemented") }

// Charge decides req at cfg.Now() and, when the decision carries a Delay,
// waits it out (without holding any lock) before returning. An error means
// no decision could be made; the Decision then still carries the tier and
// its FailureMode.
func (e *Engine) Charge(ctx context.Context, req Request) (Decision, error) {
	return Decision{}, errors.New("engine: not implemented")
}

// ChargeAt decides req at now without waiting: an admitted request with a
// Delay must not proceed before now+Delay.
func (e *Engine) ChargeAt(ctx context.Context, now time.Time, req Request) (Decision, error) {
	return Decision{}, errors.New("engine: not implemented")
}
