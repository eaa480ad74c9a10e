package envoy

import (
	"net"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// build returns the complete bootstrap for o (defaults applied). Snippet
// mode prints parts of it, so both modes come from the same messages.
func build(o GenerateOptions) *bootstrapv3.Bootstrap {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:        "ingress_http",
		GenerateRequestId: wrapperspb.Bool(true),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "quotagate_routes",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "api", Domains: []string{"*"}, Routes: routes(o),
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: ExtAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(extAuthz(o))}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
	}
	hcm.AccessLog = []*accesslogv3.AccessLog{accessLog()}
	clusters := []*clusterv3.Cluster{quotagateCluster(o)}
	if !o.Settlement.Off {
		settleTo := o.Cluster
		if host, port, err := hostPort(o.Settlement.Address); err == nil {
			settleTo = SettlementCluster
			clusters = append(clusters, http2(cluster(SettlementCluster, host, port)))
		}
		hcm.AccessLog = append(hcm.AccessLog, settlementLog(o.Settlement, settleTo))
		hcm.EarlyHeaderMutationExtensions = []*corev3.TypedExtensionConfig{stripDecisionHeader()}
	}
	clusters = append(clusters, cluster(o.Upstream, o.UpstreamAddress, o.UpstreamPort))
	if host, port, ok := collector(o); ok {
		hcm.Tracing = &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{
			Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
				ServiceName: o.TraceServiceName,
				GrpcService: &corev3.GrpcService{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: CollectorCluster}},
					Timeout:         durationpb.New(250 * time.Millisecond),
				},
			})},
		}}
		clusters = append(clusters, http2(cluster(CollectorCluster, host, port)))
	}
	// Routes (and quotagate's own routes table) match the normalized path,
	// so that no spelling of a priced path escapes its price.
	PathNormalization().apply(hcm)
	return &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: "quotagate-front-proxy", Cluster: "front-proxy"},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{{
				Name:    "ingress",
				Address: socketAddress("0.0.0.0", o.ListenPort),
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
					Name:       "envoy.filters.network.http_connection_manager",
					ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
				}}}},
			}},
			Clusters: clusters,
		},
	}
}

// hcmOf returns the HTTP connection manager of a bootstrap made by build.
func hcmOf(b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	var hcm hcmv3.HttpConnectionManager
	f := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	_ = f.GetTypedConfig().UnmarshalTo(&hcm) // made by build: cannot fail
	return &hcm
}

func extAuthz(o GenerateOptions) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: o.Cluster}},
			Timeout:         durationpb.New(o.Timeout),
		}},
		FailureModeAllow: o.FailureModeAllow,
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		// pack_as_bytes sends the body as raw_body, bytes that protobuf does
		// not require to be UTF-8, so a body cut mid-character still
		// reaches quotagate.
		WithRequestBody:           &extauthzv3.BufferSettings{MaxRequestBytes: o.MaxRequestBytes, AllowPartialMessage: true, PackAsBytes: true},
		IncludePeerCertificate:    true,
		MetadataContextNamespaces: []string{"envoy.filters.http.jwt_authn"},
	}
}

func routes(o GenerateOptions) []*routev3.Route {
	out := []*routev3.Route{{
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: o.HealthPath}},
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: o.Upstream}}},
		TypedPerFilterConfig: map[string]*anypb.Any{ExtAuthzFilterName: mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})},
	}}
	for _, r := range sortedRoutes(o.Routes) {
		rt := &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: r.Prefix}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: o.Upstream}}},
		}
		if r.Method != "" {
			rt.Match.Headers = []*routev3.HeaderMatcher{{
				Name: ":method",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: r.Method},
				}},
			}}
		}
		ext := map[string]string{}
		if r.Action != "" {
			ext["action"] = r.Action
		}
		if r.Workflow != "" {
			ext["workflow"] = r.Workflow
		}
		if len(ext) > 0 {
			rt.TypedPerFilterConfig = map[string]*anypb.Any{ExtAuthzFilterName: mustAny(&extauthzv3.ExtAuthzPerRoute{
				Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext}},
			})}
		}
		out = append(out, rt)
	}
	return out
}

// CollectorCluster names the bootstrap's cluster for the OTLP collector.
const CollectorCluster = "otel_collector"

// collector returns the host and port of o.Collector, and false when the
// tracer is left out. Validate has checked the address.
func collector(o GenerateOptions) (string, int, bool) {
	if o.Collector == "" || o.Collector == NoCollector {
		return "", 0, false
	}
	host, port, err := hostPort(o.Collector)
	return host, port, err == nil
}

// AccessLogFields are the fields of the bootstrap's JSON access log line:
// the request, the response, Envoy's trace id, and the ext_authz dynamic
// metadata quotagate returns (decision id, decision, reason, tier, action,
// workflow, cost), so that a rejection is found by its decision id.
var AccessLogFields = map[string]string{
	"start_time":         "%START_TIME%",
	"method":             "%REQ(:METHOD)%",
	"path":               "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"response_code":      "%RESPONSE_CODE%",
	"response_flags":     "%RESPONSE_FLAGS%",
	"duration_ms":        "%DURATION%",
	"request_id":         "%REQ(X-REQUEST-ID)%",
	"trace_id":           "%TRACE_ID%",
	"quota_decision_id":  "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":decision_id)%",
	"quota_decision":     "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":decision)%",
	"quota_reason":       "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":reason)%",
	"quota_tier":         "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":tier)%",
	"quota_action":       "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":action)%",
	"quota_workflow":     "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":workflow)%",
	"quota_cost":         "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":cost)%",
	"quota_failure_mode": "%DYNAMIC_METADATA(" + ExtAuthzFilterName + ":failure_mode)%",
}

// accessLog is a JSON access log on stdout with AccessLogFields.
func accessLog() *accesslogv3.AccessLog {
	fields := make(map[string]*structpb.Value, len(AccessLogFields))
	for k, v := range AccessLogFields {
		fields[k] = structpb.NewStringValue(v)
	}
	return &accesslogv3.AccessLog{
		Name: "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&streamv3.StdoutAccessLog{
			AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: fields}},
			}},
		})},
	}
}

// quotagateCluster is the gRPC (HTTP/2) cluster for quotagate, health
// checked with grpc.health.v1.
func quotagateCluster(o GenerateOptions) *clusterv3.Cluster {
	c := http2(cluster(o.Cluster, o.Address, o.Port))
	c.HealthChecks = []*corev3.HealthCheck{{
		Timeout:            durationpb.New(time.Second),
		Interval:           durationpb.New(5 * time.Second),
		UnhealthyThreshold: wrapperspb.UInt32(2),
		HealthyThreshold:   wrapperspb.UInt32(1),
		HealthChecker:      &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}},
	}}
	return c
}

// http2 makes c speak HTTP/2 (gRPC) to its endpoints.
func http2(c *clusterv3.Cluster) *clusterv3.Cluster {
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			}},
		}),
	}
	return c
}

// cluster is a plain cluster: STATIC for an IP address, STRICT_DNS for a
// host name.
func cluster(name, addr string, port int) *clusterv3.Cluster {
	kind := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(addr) != nil {
		kind = clusterv3.Cluster_STATIC
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}},
			}}}},
		},
	}
}

func socketAddress(addr string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// mustAny packs m. Marshalling a message built in this package cannot
// fail; if it did, the Any would be empty and Validate would say so.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		return &anypb.Any{}
	}
	return a
}
