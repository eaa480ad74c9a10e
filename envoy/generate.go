package envoy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// ExtAuthzFilterName is the ext_authz filter's name, and so the namespace
// of the dynamic metadata quotagate returns
// (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%).
const ExtAuthzFilterName = "envoy.filters.http.ext_authz"

// Route is one route that quotagate prices: requests whose path starts
// with Prefix (and whose method is Method, if set) are checked with the
// context extensions action=Action and workflow=Workflow.
type Route struct {
	// Prefix is the path prefix; empty means "/" + Action (or "/" +
	// Workflow when Action is empty).
	Prefix string
	// Method restricts the route to one HTTP method; empty means any.
	Method string
	// Action and Workflow become the route's context_extensions; empty
	// ones are left out.
	Action, Workflow string
}

// GenerateOptions configures Generate. The zero value of each field means
// its documented default.
type GenerateOptions struct {
	// Cluster names the Envoy cluster for quotagate; empty means
	// "quotagate".
	Cluster string
	// Address and Port are where quotagate's gRPC server listens; empty
	// and zero mean 127.0.0.1 and 9191. A host name makes a STRICT_DNS
	// cluster.
	Address string
	Port    int
	// Timeout bounds each Check; zero means 250ms.
	Timeout time.Duration
	// MaxRequestBytes is how much of a body Envoy buffers and sends for
	// word counting; larger bodies are sent truncated. Zero means 64 KiB.
	MaxRequestBytes uint32
	// FailureModeAllow lets requests through when quotagate cannot be
	// reached. The default, false, refuses them with 503.
	FailureModeAllow bool
	// Routes are the priced routes. A catch-all "/" route (plain API
	// calls) is added unless one is given.
	Routes []Route
	// HealthPath is a route with ext_authz disabled; empty means
	// "/healthz".
	HealthPath string
	// Upstream names the cluster the routes go to; empty means "backend".
	Upstream string
	// Bootstrap prints a complete bootstrap (listener, routes, clusters)
	// instead of the snippets to merge into an existing configuration.
	Bootstrap bool
	// ListenPort is the bootstrap's listener port; zero means 10000.
	ListenPort int
	// UpstreamAddress and UpstreamPort are the bootstrap's backend; empty
	// and zero mean 127.0.0.1 and 8000.
	UpstreamAddress string
	UpstreamPort    int
	// Collector is the OTLP/gRPC collector (host:port) that the
	// bootstrap's OpenTelemetry tracer sends Envoy's spans to; empty
	// means 127.0.0.1:4317, and NoCollector leaves the tracer out.
	Collector string
	// TraceServiceName is the service.name of Envoy's spans; empty means
	// "envoy".
	TraceServiceName string
	// Settlement is the access logger that reports each request's outcome
	// to quotagate; the zero value turns it on with its defaults.
	Settlement Settlement
}

// NoCollector, as GenerateOptions.Collector, leaves the tracer out of the
// bootstrap.
const NoCollector = "none"

// withDefaults returns o with every zero field set to its default.
func (o GenerateOptions) withDefaults() GenerateOptions {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.Cluster, "quotagate")
	def(&o.Address, "127.0.0.1")
	def(&o.HealthPath, "/healthz")
	def(&o.Upstream, "backend")
	def(&o.UpstreamAddress, "127.0.0.1")
	def(&o.Collector, "127.0.0.1:4317")
	def(&o.TraceServiceName, "envoy")
	if o.Port == 0 {
		o.Port = 9191
	}
	if o.Timeout == 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = 64 << 10
	}
	if o.ListenPort == 0 {
		o.ListenPort = 10000
	}
	if o.UpstreamPort == 0 {
		o.UpstreamPort = 8000
	}
	o.Settlement = o.Settlement.withDefaults()
	return o
}

// Validate reports every problem with o, each naming the option.
func (o GenerateOptions) Validate() error {
	var errs []error
	port := func(name string, p int) {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("envoy: %s: must be a port between 1 and 65535, got %d", name, p))
		}
	}
	port("port", o.Port)
	port("listen port", o.ListenPort)
	port("upstream port", o.UpstreamPort)
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("envoy: timeout: must be positive, got %v", o.Timeout))
	}
	if o.HealthPath != "" && !strings.HasPrefix(o.HealthPath, "/") {
		errs = append(errs, fmt.Errorf("envoy: health path: must start with /, got %q", o.HealthPath))
	}
	if o.Collector != "" && o.Collector != NoCollector {
		if _, _, err := hostPort(o.Collector); err != nil {
			errs = append(errs, fmt.Errorf("envoy: collector: want host:port of an OTLP/gRPC collector (e.g. otel-collector:4317) or %q, got %q", NoCollector, o.Collector))
		}
	}
	if !o.Settlement.Off {
		errs = append(errs, o.Settlement.validate()...)
		if o.Settlement.Address != "" && (o.Cluster == SettlementCluster || o.Upstream == SettlementCluster) {
			errs = append(errs, fmt.Errorf("envoy: cluster names: %q is the settlement cluster's name when a settlement address is set; name the others differently", SettlementCluster))
		}
	}
	for i, r := range o.Routes {
		if r.Prefix == "" && r.Action == "" && r.Workflow == "" {
			errs = append(errs, fmt.Errorf("envoy: routes[%d]: needs a prefix, an action or a workflow", i))
		}
		if r.Prefix != "" && !strings.HasPrefix(r.Prefix, "/") {
			errs = append(errs, fmt.Errorf("envoy: routes[%d].prefix: must start with /, got %q", i, r.Prefix))
		}
	}
	return errors.Join(errs...)
}

// Generate writes, as YAML, the Envoy configuration that puts quotagate in
// front of opts.Routes: by default the ext_authz filter, the quotagate
// cluster and the routes with their per-route context extensions, to merge
// into an existing configuration (a YAML document whose keys are
// http_filters, clusters and routes, each a list, and
// http_connection_manager, a mapping of the path normalization settings
// that PathNormalization returns); with
// opts.Bootstrap, a complete bootstrap. Everything it writes passes
// Validate (or ValidateMessage for each snippet).
func Generate(w io.Writer, opts GenerateOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	o := opts.withDefaults()
	b := build(o)
	var out bytes.Buffer
	if o.Bootstrap {
		out.WriteString("# Envoy bootstrap generated by `quotagate envoy-config --bootstrap`.\n")
		out.WriteString("# Envoy listens on :" + strconv.Itoa(o.ListenPort) + " and calls quotagate at " +
			net.JoinHostPort(o.Address, strconv.Itoa(o.Port)) + " before every request.\n")
		y, err := toYAML(b)
		if err != nil {
			return err
		}
		out.Write(y)
	} else if err := writeSnippets(&out, b, o); err != nil {
		return err
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("envoy: write: %w", err)
	}
	return nil
}

// writeSnippets writes the three parts of b that an existing
// configuration needs, each after a comment saying where it goes.
func writeSnippets(out *bytes.Buffer, b *bootstrapv3.Bootstrap, o GenerateOptions) error {
	hcm := hcmOf(b)
	mode := "fail closed: if quotagate cannot be reached, Envoy answers 503"
	if o.FailureModeAllow {
		mode = "fail open: if quotagate cannot be reached, requests go through unmetered"
	}
	parts := []struct {
		key, comment string
		msgs         []proto.Message
	}{
		{"http_filters", "Add to your HttpConnectionManager's http_filters, before envoy.filters.http.router\n# (after jwt_authn, if you use it). Timeout " + o.Timeout.String() + "; " + mode + ".",
			[]proto.Message{hcm.GetHttpFilters()[0]}},
		{"clusters", "Add to static_resources.clusters: quotagate over gRPC (HTTP/2), health-checked\n# with grpc.health.v1.", nil},
		{"routes", "Merge into your virtual host's routes: the typed_per_filter_config tells quotagate\n# which action or workflow a route is. Change the route targets to your clusters.", nil},
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == o.Cluster || c.GetName() == SettlementCluster {
			parts[1].msgs = append(parts[1].msgs, c)
		}
	}
	if o.Settlement.Address != "" && !o.Settlement.Off {
		parts[1].comment += " The second cluster is quotagate's access log listener."
	}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		parts[2].msgs = append(parts[2].msgs, r)
	}
	out.WriteString("# Generated by `quotagate envoy-config`: the ext_authz filter, the quotagate\n# cluster and the priced routes. See envoy/README.md.\n")
	if err := writeHCMSettings(out, hcm); err != nil {
		return err
	}
	for _, p := range parts {
		list := make([]any, 0, len(p.msgs))
		for _, m := range p.msgs {
			js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				return fmt.Errorf("envoy: encode %s: %w", p.key, err)
			}
			var v any
			if err := yaml.Unmarshal(js, &v); err != nil {
				return fmt.Errorf("envoy: encode %s: %w", p.key, err)
			}
			list = append(list, v)
		}
		y, err := yaml.Marshal(map[string]any{p.key: list})
		if err != nil {
			return fmt.Errorf("envoy: encode %s: %w", p.key, err)
		}
		out.WriteString("\n# " + p.comment + "\n")
		out.Write(y)
	}
	return nil
}

// writeHCMSettings writes the HttpConnectionManager fields of hcm that
// quotagate needs: the path settings that make Envoy route on the path
// quotagate prices and, unless settlement is off, the settlement access
// logger and the early removal of a client's own decision id header.
func writeHCMSettings(out *bytes.Buffer, hcm *hcmv3.HttpConnectionManager) error {
	var partial hcmv3.HttpConnectionManager
	PathNormalization().apply(&partial)
	partial.EarlyHeaderMutationExtensions = hcm.GetEarlyHeaderMutationExtensions()
	for _, l := range hcm.GetAccessLog() {
		if l.GetName() == SettlementLoggerName {
			partial.AccessLog = append(partial.AccessLog, l)
		}
	}
	y, err := toYAML(&partial)
	if err != nil {
		return err
	}
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return fmt.Errorf("envoy: encode http_connection_manager: %w", err)
	}
	if y, err = yaml.Marshal(map[string]any{"http_connection_manager": v}); err != nil {
		return fmt.Errorf("envoy: encode http_connection_manager: %w", err)
	}
	out.WriteString("\n# Set on your HttpConnectionManager, beside stat_prefix: routes (Envoy's and quotagate's\n" +
		"# routes table) then match the normalized path, so no spelling of a priced path is free.\n")
	if len(partial.AccessLog) > 0 {
		out.WriteString("# Add the access_log entry to yours: it streams each request's outcome to quotagate,\n" +
			"# which settles the charge (refunds, actual usage). Without it, every charge stands.\n" +
			"# The early_header_mutation_extensions entry drops a client's own " + DecisionIDHeader + ".\n")
	}
	out.Write(y)
	return nil
}

// toYAML renders an Envoy message with Envoy's snake_case field names.
func toYAML(m proto.Message) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("envoy: encode: %w", err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("envoy: encode: %w", err)
	}
	return y, nil
}

// sortedRoutes returns the routes with defaults filled in, the longest
// prefix first so that no route shadows a more specific one, and a
// catch-all "/" last.
func sortedRoutes(rs []Route) []Route {
	out := make([]Route, 0, len(rs)+1)
	catchAll := false
	for _, r := range rs {
		if r.Prefix == "" {
			name := r.Action
			if name == "" {
				name = r.Workflow
			}
			r.Prefix = "/" + name
		}
		if r.Prefix == "/" && r.Method == "" {
			catchAll = true
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Prefix) > len(out[j].Prefix) })
	if !catchAll {
		out = append(out, Route{Prefix: "/"})
	}
	return out
}
