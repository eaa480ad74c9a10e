package config

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

var sourceNames = []string{SourceJWT, SourceMTLS, SourceHeader, SourceAPIKey}

func (f *File) validateIdentity(p *problems) {
	id := &f.Identity
	const path = "identity"
	if len(id.Sources) == 0 {
		p.addf(path+".sources", "is empty, so every request would be refused for lack of identity; list at least one of %s", strings.Join(sourceNames, ", "))
	}
	checkNames(id.Sources, path+".sources", "identity source", sourceNames, p)
	checkDuplicates(id.Sources, path+".sources", p)
	uses := func(s string) bool { return slices.Contains(id.Sources, s) }
	if uses(SourceJWT) {
		for _, kv := range [...]struct{ key, v string }{
			{"filter", id.JWT.Filter}, {"payload_key", id.JWT.PayloadKey}, {"subject_claim", id.JWT.SubjectClaim},
		} {
			if kv.v == "" {
				p.addf(path+".jwt."+kv.key, "must not be empty while jwt is in identity.sources")
			}
		}
	}
	switch h := id.Header; {
	case h.Trusted && h.Name == "":
		p.addf(path+".header.name", "missing; a trusted header needs the name of the header Envoy sets after authentication, e.g. x-user-id")
	case uses(SourceHeader) && !h.Trusted:
		p.addf(path+".header.trusted", "is false but header is in identity.sources; set trusted: true only if Envoy sets %q after authenticating the caller, or remove header from the sources", h.Name)
	}
	checkHeaderName(id.Header.Name, path+".header.name", p)
	if uses(SourceAPIKey) && id.APIKey.Header == "" {
		p.addf(path+".api_key.header", "must not be empty while api_key is in identity.sources")
	}
	checkHeaderName(id.APIKey.Header, path+".api_key.header", p)
	for i, h := range id.StripHeaders {
		checkHeaderName(h, index(path+".strip_headers", i), p)
		if h == "" {
			p.addf(index(path+".strip_headers", i), "empty header name; remove it")
		}
	}
}

// checkHeaderName requires the lower-case form, which is how Envoy hands
// headers to ext_authz.
func checkHeaderName(name, path string, p *problems) {
	if name != strings.ToLower(name) {
		p.addf(path, "must be lower case, as Envoy passes header names, got %q; write %q", name, strings.ToLower(name))
	}
}

var httpMethods = []string{
	http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace,
}

func (f *File) validateRoutes(p *problems) {
	if d := f.Routes.Default; d != RouteDefaultCall && d != RouteDefaultDeny {
		p.addf("routes.default", "must be call (price a request that matches no route as a plain API call) or deny (refuse it with 403 no_route), got %q", d)
	}
	seen := make(map[[2]string]int)
	for i, r := range f.Routes.Rules {
		path := f.Routes.RulePath(i)
		// That the prefix is normalized as Envoy normalizes paths is checked
		// where paths are matched: the ext_authz side of the wiring.
		if !strings.HasPrefix(r.PathPrefix, "/") {
			p.addf(path+".path_prefix", "must start with /, got %q", r.PathPrefix)
		}
		if r.Method != "" && !slices.Contains(httpMethods, r.Method) {
			p.addf(path+".method", "unknown HTTP method %q; want an upper-case method such as POST, or leave it empty for every method", r.Method)
		}
		if r.Action == "" && r.Workflow == "" {
			p.addf(path, "names neither an action nor a workflow; set action, workflow or both")
		}
		key := [2]string{r.PathPrefix, r.Method}
		if j, dup := seen[key]; dup {
			p.addf(path, "has the same path_prefix and method as %s; remove one", f.Routes.RulePath(j))
			continue
		}
		seen[key] = i
	}
	if v := f.Pricing.PartialBodyWordsPerByte; v < 0 || v > 1 {
		p.addf("pricing.partial_body_words_per_byte", "must be from 0 to 1, got %g", v)
	}
	if v := f.Pricing.MaxBodyBytes; v < 0 || v > 1<<40 {
		p.addf("pricing.max_body_bytes", "must be from 1 to 1099511627776 (1 TiB) bytes, or 0 for 64 MiB, got %d", v)
	}
}

func (f *File) validateServer(p *problems) {
	s := &f.Server
	checkAddr(s.GRPCAddr, "server.grpc_addr", p)
	checkAddr(s.HTTPAddr, "server.http_addr", p)
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		p.addf("server.tls", "cert_file and key_file go together; set both or neither")
	}
	if s.TLS.ClientCAFile != "" && s.TLS.CertFile == "" {
		p.addf("server.tls.client_ca_file", "requires cert_file and key_file: client certificates need a TLS listener")
	}
	if s.MaxConcurrentStreams == 0 {
		p.addf("server.max_concurrent_streams", "must be > 0, got 0")
	}
	for _, d := range [...]struct {
		key      string
		v        Duration
		positive bool
	}{
		{"keepalive.time", s.Keepalive.Time, true}, {"keepalive.timeout", s.Keepalive.Timeout, true},
		{"keepalive.min_time", s.Keepalive.MinTime, false}, {"grace_period", s.GracePeriod, false},
	} {
		switch {
		case d.positive && d.v <= 0:
			p.addf("server."+d.key, "must be > 0, got %s", d.v)
		case d.v < 0:
			p.addf("server."+d.key, "must be >= 0, got %s", d.v)
		}
	}
	if n := s.MaxReceiveBytes; n < 1<<20 || n > 1<<30 {
		p.addf("server.max_receive_bytes", "must be from 1048576 (1 MiB) to 1073741824 (1 GiB), and well above Envoy's with_request_body.max_request_bytes plus the request headers (default 8388608), got %d", n)
	}
	validateAccessLog(&s.AccessLog, s.GRPCAddr, p)
	if c := s.InsufficientBalanceStatus; c < 400 || c > 599 {
		p.addf("server.insufficient_balance_status", "must be an HTTP error status from 400 to 599 (402 by default), got %d", c)
	}
	for _, t := range [...]struct {
		key string
		v   float64
	}{{"sample_allowed", f.Tracing.SampleAllowed}, {"sample_rejected", f.Tracing.SampleRejected}} {
		if t.v < 0 || t.v > 1 {
			p.addf("tracing."+t.key, "must be a fraction from 0 to 1, got %g", t.v)
		}
	}
	f.validateStore(p)
}

func checkAddr(addr, path string, p *problems) {
	_, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		p.addf(path, "want host:port such as \":9191\" or \"127.0.0.1:9191\", got %q", addr)
	}
}

// validateRedisTarget checks that exactly one of addr, cluster and
// sentinel says where Redis is, and explains the usual mix-ups: several
// addresses in addr, or addr set beside cluster or sentinel.
func validateRedisTarget(r *RedisStoreConfig, p *problems) {
	cluster := len(r.Cluster.Addrs) > 0
	sentinel := len(r.Sentinel.Addrs) > 0 || r.Sentinel.Master != ""
	switch {
	case cluster && sentinel:
		p.addf("store.redis", "cluster and sentinel are both set; keep cluster for a Redis Cluster or sentinel for a primary that Sentinels watch, not both")
	case r.Addr != "" && (cluster || sentinel):
		which := "cluster"
		if sentinel {
			which = "sentinel"
		}
		p.addf("store.redis.addr", "set to %q beside store.redis.%s; remove addr: with %s, the addresses go in store.redis.%s.addrs", r.Addr, which, which, which)
	case !cluster && !sentinel && r.Addr == "":
		p.addf("store.redis.addr", "missing; the redis store needs the server's host:port, such as \"127.0.0.1:6379\", or store.redis.cluster.addrs for a Redis Cluster, or store.redis.sentinel for Sentinel")
	case r.Addr != "" && strings.ContainsAny(r.Addr, ", \t"):
		p.addf("store.redis.addr", "holds several addresses (%q) but takes one host:port; for a Redis Cluster list them as store.redis.cluster.addrs: [\"host:port\", ...], for Sentinel as store.redis.sentinel.addrs with store.redis.sentinel.master", r.Addr)
	case r.Addr != "":
		checkAddr(r.Addr, "store.redis.addr", p)
	}
	for i, a := range r.Cluster.Addrs {
		checkAddr(a, fmt.Sprintf("store.redis.cluster.addrs[%d]", i), p)
	}
	for i, a := range r.Sentinel.Addrs {
		checkAddr(a, fmt.Sprintf("store.redis.sentinel.addrs[%d]", i), p)
	}
	if sentinel && r.Sentinel.Master == "" {
		p.addf("store.redis.sentinel.master", "missing; name the primary as the Sentinels know it (their \"sentinel monitor NAME ...\" line), such as \"mymaster\"")
	}
	if sentinel && len(r.Sentinel.Addrs) == 0 {
		p.addf("store.redis.sentinel.addrs", "missing; list the Sentinels' host:port (usually 3), such as [\"10.0.0.1:26379\", \"10.0.0.2:26379\", \"10.0.0.3:26379\"]")
	}
	if cluster && r.DB != 0 {
		p.addf("store.redis.db", "must be 0 with store.redis.cluster (a Redis Cluster has database 0 only), got %d", r.DB)
	}
}

func (f *File) validateStore(p *problems) {
	st := &f.Store
	switch st.Kind {
	case "", "memory":
	case "redis":
		validateRedisTarget(&st.Redis, p)
		if st.Redis.Timeout < 0 {
			p.addf("store.redis.timeout", "must be >= 0, got %s", st.Redis.Timeout)
		}
		if st.Redis.Lease < 0 {
			p.addf("store.redis.lease", "must be >= 0 (0 is exact mode), got %d", st.Redis.Lease)
		}
		if st.Redis.WaitReplicas < 0 {
			p.addf("store.redis.wait_replicas", "must be >= 0 (0: asynchronous replication), got %d", st.Redis.WaitReplicas)
		}
		if st.Redis.DB < 0 {
			p.addf("store.redis.db", "must be >= 0, got %d", st.Redis.DB)
		}
	case "sqlite":
		// An empty path means a file in the server's data directory.
	default:
		p.addf("store.kind", "unknown store %q; want memory, sqlite or redis", st.Kind)
	}
	if st.FlushInterval <= 0 {
		p.addf("store.flush_interval", "must be > 0, got %s", st.FlushInterval)
	}
	if st.Durability != DurabilityBatch && st.Durability != DurabilitySync {
		p.addf("store.durability", "must be batch or sync (async is accepted as the old name of batch), got %q", st.Durability)
	}
}
