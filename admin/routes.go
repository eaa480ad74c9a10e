package admin

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// access says who may call a route.
type access int

const (
	// public routes need no token: /healthz, /openapi.json and the
	// dashboard's static page, which holds no data.
	public access = iota
	// teamScoped routes check the token's team against the target in the
	// handler.
	teamScoped
	// global routes touch no team: a team-restricted token is refused.
	global
	// catalogue routes are global but harmless to any token: the tiers.
	catalogue
)

// route is one endpoint. The route table drives the mux, and the tests
// check it against the OpenAPI document and the access-control matrix.
type route struct {
	method, path string
	scope        Scope
	access       access
	h            func(w http.ResponseWriter, r *http.Request, p principal) error
}

func (s *Server) routeTable() []route {
	return []route{
		{"GET", "/healthz", ScopeNone, public, s.healthz},
		{"GET", "/openapi.json", ScopeNone, public, serveOpenAPI},
		{"GET", "/v1/subjects/{id}", ScopeRead, teamScoped, s.getSubject},
		{"PUT", "/v1/subjects/{id}/profile", ScopeWrite, teamScoped, s.putProfile},
		{"PATCH", "/v1/subjects/{id}/profile", ScopeWrite, teamScoped, s.patchProfile},
		{"POST", "/v1/subjects/{id}/credits", ScopeWrite, teamScoped, s.postSubjectCredits},
		{"GET", "/v1/teams/{name}", ScopeRead, teamScoped, s.getTeam},
		{"POST", "/v1/teams/{name}/credits", ScopeWrite, teamScoped, s.postTeamCredits},
		{"GET", "/v1/tiers", ScopeRead, catalogue, s.getTiers},
		{"GET", "/v1/config", ScopeRead, global, s.getConfig},
		{"GET", "/v1/capacity", ScopeRead, global, s.getCapacity},
		{"PUT", "/v1/capacity", ScopeAdmin, global, s.putCapacity},
		{"GET", "/v1/alerts", ScopeRead, teamScoped, s.getAlerts},
		{"POST", "/v1/alerts/{id}/ack", ScopeWrite, teamScoped, s.ackAlert},
		{"GET", "/v1/usage", ScopeRead, teamScoped, s.getUsage},
		{"GET", "/v1/stream", ScopeRead, global, s.stream},
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routeTable() {
		mux.Handle(rt.method+" "+rt.path, s.guard(rt))
	}
	mux.Handle("GET /dashboard/", dashboardHandler())
	mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, "no endpoint %s %s: the API is described at /openapi.json", r.Method, r.URL.Path))
	}))
	return securityHeaders(s.canonical(mux))
}

// canonical answers a request whose path is not in canonical form (an
// empty, "." or ".." segment, which an id such as "." or "a/../b" spells)
// with a JSON 400, where the mux would redirect to the cleaned path: a
// client that followed the redirect would act on another resource.
func (s *Server) canonical(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		c := path.Clean(p)
		if strings.HasSuffix(p, "/") && c != "/" {
			c += "/"
		}
		if p != "" && c != p {
			s.writeError(w, r, errorf(http.StatusBadRequest,
				"path %q is not canonical (it has an empty, \".\" or \"..\" segment, which ids such as \".\" spell): such an id cannot be addressed; the canonical path is %q", p, c))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guard authenticates and authorizes a request for rt, then calls it.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r, rt)
		if err == nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			err = rt.h(w, r, p)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate returns the principal of r if it may call rt.
func (s *Server) authenticate(r *http.Request, rt route) (principal, error) {
	if rt.access == public {
		return principal{}, nil
	}
	if s.open {
		if !remoteIsLoopback(r) {
			return principal{}, errorf(http.StatusForbidden, "no admin tokens are configured, so only loopback clients are served")
		}
		return principal{name: "loopback", scope: ScopeAdmin}, nil
	}
	client, now := clientKey(r), s.now()
	secret, hasToken := bearer(r)
	var p principal
	ok := false
	if hasToken {
		// A valid token is recognised before any limiter refuses: the
		// limiters only ever refuse failing requests, so that nobody can
		// lock a valid token out.
		p, ok = s.tokens.lookup(secret)
	}
	if !ok {
		return principal{}, s.authFailure(r, client, secret, hasToken, now)
	}
	if p.scope < rt.scope {
		return principal{}, errorf(http.StatusForbidden, "token %q has scope %s; %s %s needs %s", p.name, p.scope, rt.method, rt.path, rt.scope)
	}
	if rt.access == global && p.team != "" {
		return principal{}, errorf(http.StatusForbidden, "token %q is restricted to team %q; %s %s is not a team resource", p.name, p.team, rt.method, rt.path)
	}
	return p, nil
}

// authFailure counts a failed authentication, per presented token (its
// SHA-256; a missing token counts under one key of its address) and per
// client address, and answers it: 429 while either is over its ceiling,
// else 401.
func (s *Server) authFailure(r *http.Request, client, secret string, hasToken bool, now time.Time) error {
	tokenKey := "none " + client
	if hasToken {
		tokenKey = HashToken(secret)
	}
	wait, blocked := s.tokenFails.blocked(tokenKey, now)
	if w, b := s.addrFails.blocked(client, now); b {
		wait, blocked = max(wait, w), true
	}
	if blocked {
		secs := int(wait.Seconds()) + 1
		return &httpError{Code: http.StatusTooManyRequests, RetryAfter: secs,
			Msg: "too many failed authentications with this token or from your address: retry in " + strconv.Itoa(secs) + "s"}
	}
	s.tokenFails.fail(tokenKey, now)
	s.addrFails.fail(client, now)
	if !hasToken {
		return errorf(http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
	}
	s.log.Warn("admin: authentication failed", "client", client, "method", r.Method, "path", r.URL.Path)
	return errorf(http.StatusUnauthorized, "unknown bearer token")
}

// securityHeaders sets headers that keep the dashboard from being framed,
// sniffed or made to load anything from elsewhere.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}
