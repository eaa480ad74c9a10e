package extauthz

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Forward-auth request headers, as Caddy forward_auth, Traefik ForwardAuth
// and nginx auth_request (by convention) set them.
const (
	headerForwardedMethod = "X-Forwarded-Method"
	headerForwardedURI    = "X-Forwarded-Uri"
	headerOriginalURI     = "X-Original-Uri"
	headerForwardedHost   = "X-Forwarded-Host"
	headerForwardedProto  = "X-Forwarded-Proto"
	// headerRemove is how an HTTP authorization server tells Envoy which
	// request headers to remove before the request goes upstream.
	headerRemove = "X-Envoy-Auth-Headers-To-Remove"
)

// maxHTTPBody bounds how much of a body the HTTP mode reads; a longer body
// is priced as truncated, by content-length.
const maxHTTPBody = 1 << 20

// HTTPHandler returns the HTTP authorization mode: the same decisions,
// headers and JSON bodies as Check, for proxies that authorize over HTTP.
//
// It understands two shapes of request. Envoy's http_service sends the
// original method, path, headers and (with with_request_body) body; leave
// its path_prefix empty. Forward-auth proxies (Caddy forward_auth, Traefik
// ForwardAuth, nginx auth_request) describe the original request in
// X-Forwarded-Method, X-Forwarded-Uri (or X-Original-URI) and
// X-Forwarded-Host; then, because the proxy's configuration and not the
// client chooses the authorization URL, its query parameters "action" and
// "workflow" play the part of Envoy's context_extensions.
//
// An allow answers 200 with the upstream and client headers (for the proxy
// to copy) and X-Envoy-Auth-Headers-To-Remove; a denial answers with its
// status, headers and JSON body.
func (s *Server) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := getCall()
		defer putCall(c)
		var err error
		if c.in, err = inputFromHTTP(r); err != nil {
			http.Error(w, "cannot read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.decideInto(r.Context(), s.pol.Load(), &c.in, &c.v)
		writeVerdict(w, &c.v)
	})
}

func inputFromHTTP(r *http.Request) (Input, error) {
	in := Input{
		Method:        r.Method,
		Path:          r.URL.RequestURI(),
		Host:          r.Host,
		Headers:       make(map[string]string, len(r.Header)),
		ContentLength: r.ContentLength,
	}
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		p, _ := strconv.ParseUint(port, 10, 16)
		in.SourceAddress, in.SourcePort = host, uint32(p)
	}
	for k, vs := range r.Header {
		in.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	uri := r.Header.Get(headerForwardedURI)
	if uri == "" {
		uri = r.Header.Get(headerOriginalURI)
	}
	if uri != "" {
		in.Path = uri
		if m := r.Header.Get(headerForwardedMethod); m != "" {
			in.Method = m
		}
		if h := r.Header.Get(headerForwardedHost); h != "" {
			in.Host = h
		}
		q := r.URL.Query()
		if a, wf := q.Get("action"), q.Get("workflow"); a != "" || wf != "" {
			in.ContextExtensions = map[string]string{"action": a, "workflow": wf}
		}
	}
	in.Scheme = r.Header.Get(headerForwardedProto)
	in.RequestID = r.Header.Get("X-Request-Id")
	if r.Body == nil || r.Body == http.NoBody {
		return in, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxHTTPBody+1))
	if err != nil && !errors.Is(err, io.EOF) {
		return in, err
	}
	if len(body) > maxHTTPBody {
		body = body[:maxHTTPBody]
		in.BodyTruncated = true
	}
	in.Body = string(body)
	return in, nil
}

// writeVerdict writes v as an HTTP authorization response.
func writeVerdict(w http.ResponseWriter, v *Verdict) {
	h := w.Header()
	for _, hv := range v.Headers {
		h.Set(hv.Key, hv.Value)
	}
	if !v.Allowed {
		w.WriteHeader(v.Status)
		w.Write(v.Body)
		return
	}
	for _, hv := range v.UpstreamHeaders {
		h.Set(hv.Key, hv.Value)
	}
	if len(v.RemoveHeaders) > 0 {
		h.Set(headerRemove, strings.Join(v.RemoveHeaders, ", "))
	}
	w.WriteHeader(http.StatusOK)
}
