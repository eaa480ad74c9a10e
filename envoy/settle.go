package envoy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The names that tie Envoy's access log to quotagate's settlement.
const (
	// SettlementLoggerName is the access logger's extension name.
	SettlementLoggerName = "envoy.access_loggers.http_grpc"
	// SettlementLogName is the log_name Envoy sends in the first message
	// of each access-log stream, so that quotagate can tell its logger
	// from others that share the stream.
	SettlementLogName = "quotagate_settlement"
	// DecisionIDHeader is the request header quotagate sets on an allowed
	// request; the logger logs it as the fallback join key when the
	// ext_authz dynamic metadata is missing.
	DecisionIDHeader = "x-quota-decision-id"
	// DefaultUsageHeader is the response header logged when
	// Settlement.UsageHeaders is empty: the actual usage an upstream
	// reports (an LLM backend's tokens, for example).
	DefaultUsageHeader = "x-usage-tokens"
	// SettlementCluster names the cluster for quotagate's access log
	// service when it has a listener of its own (Settlement.Address).
	SettlementCluster = "quotagate_settlement"
	// NoUsageHeader, as the only entry of Settlement.UsageHeaders, logs no
	// usage header: settlement then refunds by response code only.
	NoUsageHeader = "none"
	// maxUsageHeaders bounds Settlement.UsageHeaders: every logged header
	// is sent for every request.
	maxUsageHeaders = 16
)

// Settlement configures the access logger through which Envoy reports
// each request's outcome to quotagate, which then settles the charge:
// it refunds on the configured response codes and reprices from the
// usage header. The zero value is the default: settlement on, through the
// ext_authz cluster, logging DefaultUsageHeader.
type Settlement struct {
	// Off leaves the logger out. quotagate then never learns how a
	// request ended: no refund, no usage adjustment, every charge stands.
	Off bool
	// Address is quotagate's access log service as host:port when it has
	// a listener of its own; empty means the ext_authz cluster, whose
	// listener serves the access log service too.
	Address string
	// UsageHeaders are the response headers logged for settlement by
	// actual usage; empty means DefaultUsageHeader, and {NoUsageHeader}
	// means none. Names are case-insensitive and logged lowercased.
	UsageHeaders []string
	// FlushInterval is the longest an entry waits in Envoy's buffer
	// before it is sent, and so bounds how late a refund is; zero means
	// 250ms (Envoy's own default is 1s).
	FlushInterval time.Duration
	// BufferBytes is the buffer size at which Envoy sends without waiting
	// for the interval; zero means 16 KiB (Envoy's default).
	BufferBytes uint32
}

// withDefaults returns s with its zero fields set to their defaults and
// the usage headers lowercased.
func (s Settlement) withDefaults() Settlement {
	if s.FlushInterval == 0 {
		s.FlushInterval = 250 * time.Millisecond
	}
	if s.BufferBytes == 0 {
		s.BufferBytes = 16 << 10
	}
	switch {
	case len(s.UsageHeaders) == 0:
		s.UsageHeaders = []string{DefaultUsageHeader}
	case len(s.UsageHeaders) == 1 && s.UsageHeaders[0] == NoUsageHeader:
		s.UsageHeaders = nil
	default:
		hs := make([]string, len(s.UsageHeaders))
		for i, h := range s.UsageHeaders {
			hs[i] = strings.ToLower(h)
		}
		s.UsageHeaders = hs
	}
	return s
}

// validate reports every problem with s, each naming the option.
func (s Settlement) validate() []error {
	var errs []error
	if s.Address != "" {
		if _, _, err := hostPort(s.Address); err != nil {
			errs = append(errs, fmt.Errorf("envoy: settlement address: want host:port of quotagate's access log listener (e.g. quotagate:9192), got %q", s.Address))
		}
	}
	if s.FlushInterval < 0 || (s.FlushInterval > 0 && s.FlushInterval < time.Millisecond) || s.FlushInterval > time.Minute {
		errs = append(errs, fmt.Errorf("envoy: settlement flush interval: must be between 1ms and 1m, got %v", s.FlushInterval))
	}
	if len(s.UsageHeaders) > maxUsageHeaders {
		errs = append(errs, fmt.Errorf("envoy: usage headers: at most %d, got %d", maxUsageHeaders, len(s.UsageHeaders)))
	}
	seen := map[string]bool{}
	for i, h := range s.UsageHeaders {
		lower := strings.ToLower(h)
		switch {
		case h == NoUsageHeader && len(s.UsageHeaders) > 1:
			errs = append(errs, fmt.Errorf("envoy: usage headers[%d]: %q means no usage header and cannot be combined with others", i, NoUsageHeader))
		case h == NoUsageHeader:
		case !isToken(h):
			errs = append(errs, fmt.Errorf("envoy: usage headers[%d]: want an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~), got %q", i, h))
		case lower == DecisionIDHeader:
			errs = append(errs, fmt.Errorf("envoy: usage headers[%d]: %s is quotagate's own request header, not a usage header", i, h))
		case seen[lower]:
			errs = append(errs, fmt.Errorf("envoy: usage headers[%d]: %q is listed twice", i, h))
		}
		seen[lower] = true
	}
	return errs
}

// hostPort splits host:port, with a non-empty host and a port in 1..65535.
func hostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if host == "" || err != nil || n < 1 || n > 65535 {
		return "", 0, errors.New("want host:port with a port between 1 and 65535")
	}
	return host, n, nil
}

// isToken reports whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// settlementLog is the gRPC access logger that streams every request's
// outcome to cluster. Envoy puts all dynamic metadata, and so quotagate's
// decision id under ExtAuthzFilterName, in each entry's
// common_properties.metadata; the request's DecisionIDHeader and the
// usage headers are logged as well.
func settlementLog(s Settlement, cluster string) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name: SettlementLoggerName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&grpclogv3.HttpGrpcAccessLogConfig{
			CommonConfig: &grpclogv3.CommonGrpcAccessLogConfig{
				LogName:             SettlementLogName,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcService: &corev3.GrpcService{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}},
				},
				BufferFlushInterval: durationpb.New(s.FlushInterval),
				BufferSizeBytes:     wrapperspb.UInt32(s.BufferBytes),
				// Entries buffered while the stream cannot be opened are
				// lost, and their charges stand: retry the stream.
				GrpcStreamRetryPolicy: &corev3.RetryPolicy{NumRetries: wrapperspb.UInt32(3)},
			},
			AdditionalRequestHeadersToLog:  []string{DecisionIDHeader},
			AdditionalResponseHeadersToLog: s.UsageHeaders,
		})},
	}
}

// stripDecisionHeader removes a client's own DecisionIDHeader before
// routing and ext_authz, so that the logged header is always the one
// quotagate set: a client could otherwise name another request's
// decision on a route where ext_authz does not run and have it settled.
func stripDecisionHeader() *corev3.TypedExtensionConfig {
	return &corev3.TypedExtensionConfig{
		Name: "quotagate.strip_decision_id",
		TypedConfig: mustAny(&earlymutationv3.HeaderMutation{Mutations: []*mutationv3.HeaderMutation{{
			Action: &mutationv3.HeaderMutation_Remove{Remove: DecisionIDHeader},
		}}}),
	}
}
