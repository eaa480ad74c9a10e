package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/extauthz/pathnorm"
)

// Route maps a request path and method to an action and workflow, for
// routes whose context_extensions name neither.
type Route struct {
	// PathPrefix matches the start of the normalized path (see package
	// pathnorm: no query, dot segments removed, slashes merged, unreserved
	// characters decoded), case-sensitively, as Envoy's prefix match does. A
	// prefix that is not itself normalized never matches.
	PathPrefix string
	// Method matches the HTTP method, case-insensitively; empty matches any.
	Method           string
	Action, Workflow string
}

// Options is a Server's wiring, fixed for its lifetime. The zero value of
// each field means its documented default.
type Options struct {
	// Logger receives operator-facing logs. Nil discards them.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Observe, if set, is called once at the end of every decision, with
	// the handler's context (which carries the incoming gRPC metadata), the
	// time the request arrived, and the input and verdict. It must not
	// retain in or v. It is given once, at construction: a reload
	// (SetPolicy) cannot drop it.
	Observe func(ctx context.Context, start time.Time, in *Input, v *Verdict)
}

// Policy is how a Server identifies, routes, prices and answers requests:
// everything a configuration reload may change. The zero value of each
// field means its documented default.
type Policy struct {
	// Identity says how callers are identified.
	Identity IdentityOptions
	// Routes are tried in order when context_extensions give no action or
	// workflow; the first match wins.
	Routes []Route
	// Unrouted is what a request gets when its context_extensions name no
	// action or workflow and no Route matches. The zero value is
	// UnroutedCall.
	Unrouted Unrouted
	// StripHeaders are identity spoofing vectors (x-tier, ...) removed from
	// the request sent upstream.
	StripHeaders []string
	// InsufficientBalanceStatus is the HTTP status for an insufficient
	// balance. Zero means 402.
	InsufficientBalanceStatus int
	// WordsPerByte prices the unseen part of a truncated body. Zero means
	// MaxWordsPerByte, which never under-charges; values below the density
	// of the part received are raised to it.
	WordsPerByte float64
	// MaxBodyBytes is the largest body, in bytes, that a request may have:
	// the full size a truncated body claims in content-length, or the size
	// of a body received whole. A larger one is refused with 413
	// request_too_large before anything is charged, so that no claimed size
	// can inflate a price past what can be counted. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// UpgradeURL returns the upgrade link offered to a refused client of
	// the tier. Nil means none.
	UpgradeURL func(engine.Tier) string
}

// Server decides requests with an engine. It implements Envoy's
// Authorization gRPC service and, through HTTPHandler, the HTTP
// authorization mode. It is safe for concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	eng     *engine.Engine
	logger  *slog.Logger
	now     func() time.Time
	observe func(ctx context.Context, start time.Time, in *Input, v *Verdict)
	// pol is the policy in force. A request loads it once and uses that
	// one throughout, so a reload never mixes two policies in a decision.
	pol atomic.Pointer[policy]
}

// policy is a Policy with defaults applied, and what is derived from it.
// It is immutable but for the unknown action log; SetPolicy swaps it whole.
type policy struct {
	Policy
	strip []string // lower-cased StripHeaders
	// unknown remembers the unknown action names already logged, so that
	// each is logged once per policy.
	unknown unknownActionLog
}

func newPolicy(p Policy) (*policy, error) {
	if err := p.withDefaults(); err != nil {
		return nil, err
	}
	pol := &policy{Policy: p}
	for _, h := range p.StripHeaders {
		pol.strip = append(pol.strip, strings.ToLower(h))
	}
	return pol, nil
}

// NewServer returns a Server that charges requests to eng under p, wired
// by opts.
func NewServer(eng *engine.Engine, opts Options, p Policy) (*Server, error) {
	if eng == nil {
		return nil, errors.New("extauthz: nil engine")
	}
	pol, err := newPolicy(p)
	if err != nil {
		return nil, err
	}
	s := &Server{eng: eng, logger: opts.Logger, now: opts.Now, observe: opts.Observe}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.pol.Store(pol)
	return s, nil
}

// SetPolicy replaces the server's policy, for a configuration reload. A
// policy that is refused changes nothing. It is safe to call while requests
// are being decided: each request is decided wholly under the policy it
// started with, or wholly under p.
func (s *Server) SetPolicy(p Policy) error {
	pol, err := newPolicy(p)
	if err != nil {
		return err
	}
	s.pol.Store(pol)
	return nil
}

// Validate reports what is wrong with p, as NewServer and SetPolicy would
// refuse it, so that a reload can check the policy before it changes
// anything else.
func (p Policy) Validate() error {
	return p.withDefaults()
}

func (p *Policy) withDefaults() error {
	p.Identity.withDefaults()
	if p.InsufficientBalanceStatus == 0 {
		p.InsufficientBalanceStatus = 402
	}
	if s := p.InsufficientBalanceStatus; s < 400 || s > 599 {
		return fmt.Errorf("extauthz: insufficient balance status %d is not an HTTP error status (400-599)", s)
	}
	if !(p.WordsPerByte >= 0 && p.WordsPerByte <= 1) {
		return fmt.Errorf("extauthz: words per byte %g must be from 0 to 1 (CountWords never finds more than %g per byte)", p.WordsPerByte, MaxWordsPerByte)
	}
	if p.MaxBodyBytes == 0 {
		p.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if p.MaxBodyBytes < 0 || p.MaxBodyBytes > MaxBodyBytesLimit {
		return fmt.Errorf("extauthz: max body bytes %d must be from 1 to %d", p.MaxBodyBytes, int64(MaxBodyBytesLimit))
	}
	if p.WordsPerByte == 0 {
		p.WordsPerByte = MaxWordsPerByte
	}
	return nil
}

// Decide identifies the caller of in, prices the request, charges it and
// returns the answer. It never fails: an engine error becomes a Verdict
// that applies the tier's failure mode.
func (s *Server) Decide(ctx context.Context, in Input) Verdict {
	c := getCall()
	defer putCall(c)
	c.in = in
	s.decideInto(ctx, s.pol.Load(), &c.in, &c.v)
	return c.v
}

// decideInto is Decide under p, writing into a Verdict that the caller owns
// (a pooled one: a Verdict embeds a Decision, over a kilobyte, which would
// otherwise be allocated per request because Observe sees it).
func (s *Server) decideInto(ctx context.Context, p *policy, in *Input, v *Verdict) {
	start := s.now()
	s.decide(ctx, p, in, v)
	if s.observe != nil {
		s.observe(ctx, start, in, v)
	}
}

// call is the per-request scratch space, recycled through callPool.
type call struct {
	in Input
	v  Verdict
}

var callPool = sync.Pool{New: func() any { return new(call) }}

func getCall() *call { return callPool.Get().(*call) }

func putCall(c *call) {
	*c = call{}
	callPool.Put(c)
}

// decide identifies, routes and prices in under p, charges it, and fills v.
func (s *Server) decide(ctx context.Context, p *policy, in *Input, v *Verdict) {
	var req engine.Request
	v.Identity = p.Identity.identify(in, &req)
	var routed bool
	req.Action, req.Workflow, routed = p.route(in)
	if !routed && p.Unrouted == UnroutedDeny && req.Subject != "" {
		noRoute(&req, v)
		return
	}
	units, size := p.units(in)
	if req.Subject == "" {
		// Who asked comes first: the engine refuses it with 401, whatever
		// the body.
		units, size = 0, sizeOK
	}
	switch size {
	case sizeUnknown:
		lengthRequired(&req, v)
		return
	case sizeTooLarge:
		p.bodyTooLarge(&req, in, v)
		return
	}
	req.Units = units
	req.Trace = traceRefOf(in.Headers)
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = dl
	}
	d, err := s.eng.Charge(ctx, req)
	if d.UnknownAction != "" {
		p.unknown.warn(s.logger, &d)
	}
	now := s.now()
	if err != nil {
		s.failure(now, &d, err, v)
		return
	}
	v.Decision = d
	if d.Allowed {
		p.allow(now, in, v)
		return
	}
	p.deny(now, v)
}

// route returns the action and workflow from context_extensions, falling
// back to the first configured route that matches the normalized path.
// routed is false when neither named an action or workflow.
func (p *policy) route(in *Input) (action, workflow string, routed bool) {
	action, workflow = in.ContextExtensions["action"], in.ContextExtensions["workflow"]
	if action != "" || workflow != "" {
		return action, workflow, true
	}
	if len(p.Routes) == 0 {
		return "", "", false
	}
	path := pathnorm.Path(in.Path)
	for _, r := range p.Routes {
		if strings.HasPrefix(path, r.PathPrefix) && (r.Method == "" || strings.EqualFold(r.Method, in.Method)) {
			return r.Action, r.Workflow, r.Action != "" || r.Workflow != ""
		}
	}
	return "", "", false
}

// bodySize says whether a request's body can be priced.
type bodySize int

const (
	sizeOK       bodySize = iota
	sizeUnknown           // truncated without a content-length: no upper bound
	sizeTooLarge          // larger than MaxBodyBytes, claimed or seen
)

// units counts the words of the body, pricing a truncated body by the
// documented conservative rule. The count is never below the words of the
// part received, and never above MaxBodyBytes words.
func (p *policy) units(in *Input) (int64, bodySize) {
	limit := p.MaxBodyBytes
	if int64(len(in.Body)) > limit || (in.BodyTruncated && in.ContentLength > limit) {
		return 0, sizeTooLarge
	}
	if !in.BodyTruncated {
		return CountWords(in.Body), sizeOK
	}
	if in.ContentLength < 0 {
		return 0, sizeUnknown
	}
	seen := trimPartialRune(in.Body)
	counted := CountWords(seen)
	rate := p.WordsPerByte
	if len(seen) > 0 {
		if density := float64(counted) / float64(len(seen)); density > rate {
			rate = density
		}
	}
	return partialWords(counted, int64(len(seen)), in.ContentLength, rate), sizeOK
}
