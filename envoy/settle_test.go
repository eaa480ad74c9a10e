package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	"sigs.k8s.io/yaml"

	"github.com/quotagate/quotagate/extauthz"
)

// settlementOf returns the settlement access logger of hcm (nil if there
// is none) and whether a client's own decision id header is removed
// before ext_authz runs.
func settlementOf(t *testing.T, hcm *hcmv3.HttpConnectionManager) (*grpclogv3.HttpGrpcAccessLogConfig, bool) {
	t.Helper()
	var als *grpclogv3.HttpGrpcAccessLogConfig
	for _, l := range hcm.GetAccessLog() {
		if l.GetName() != SettlementLoggerName {
			continue
		}
		if als != nil {
			t.Errorf("two %s access loggers: each request would be settled from two entries", SettlementLoggerName)
		}
		als = &grpclogv3.HttpGrpcAccessLogConfig{}
		if err := l.GetTypedConfig().UnmarshalTo(als); err != nil {
			t.Fatalf("%s: %v", SettlementLoggerName, err)
		}
	}
	stripped := false
	for _, e := range hcm.GetEarlyHeaderMutationExtensions() {
		var m earlymutationv3.HeaderMutation
		if e.GetTypedConfig().UnmarshalTo(&m) != nil {
			continue
		}
		for _, mu := range m.GetMutations() {
			stripped = stripped || strings.EqualFold(mu.GetRemove(), DecisionIDHeader)
		}
	}
	return als, stripped
}

// checkSettlement fails the test unless als streams to cluster, logs the
// decision id header and exactly the usage headers, and flushes within a
// second.
func checkSettlement(t *testing.T, where string, als *grpclogv3.HttpGrpcAccessLogConfig, cluster string, usage []string) {
	t.Helper()
	if als == nil {
		t.Errorf("%s: no %s access logger: quotagate would never settle a charge", where, SettlementLoggerName)
		return
	}
	c := als.GetCommonConfig()
	if got := c.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != cluster {
		t.Errorf("%s: access log cluster %q, want %q", where, got, cluster)
	}
	if c.GetLogName() != SettlementLogName {
		t.Errorf("%s: log_name %q, want %q", where, c.GetLogName(), SettlementLogName)
	}
	if f := c.GetBufferFlushInterval().AsDuration(); f <= 0 || f > time.Second {
		t.Errorf("%s: buffer_flush_interval %v: want set, at most 1s, so that refunds are prompt", where, f)
	}
	if !slices.Equal(als.GetAdditionalRequestHeadersToLog(), []string{DecisionIDHeader}) {
		t.Errorf("%s: request headers logged %v, want [%s]", where, als.GetAdditionalRequestHeadersToLog(), DecisionIDHeader)
	}
	if !slices.Equal(als.GetAdditionalResponseHeadersToLog(), usage) {
		t.Errorf("%s: response headers logged %v, want %v", where, als.GetAdditionalResponseHeadersToLog(), usage)
	}
}

// TestDecisionIDHeaderIsQuotagates pins the logged header to the one the
// ext_authz server sets.
func TestDecisionIDHeaderIsQuotagates(t *testing.T) {
	if DecisionIDHeader != extauthz.HeaderDecisionID {
		t.Errorf("DecisionIDHeader %q, but quotagate sets %q", DecisionIDHeader, extauthz.HeaderDecisionID)
	}
}

func TestGenerateSettlement(t *testing.T) {
	tests := []struct {
		name        string
		settle      Settlement
		wantCluster string   // "" means no logger
		wantUsage   []string // response headers logged
		wantFlush   time.Duration
		wantAddr    string // the settlement cluster's host:port, if any
	}{
		{name: "default", wantCluster: "quotagate", wantUsage: []string{DefaultUsageHeader}, wantFlush: 250 * time.Millisecond},
		{name: "usage headers lowercased, faster flush", settle: Settlement{UsageHeaders: []string{"X-Usage-Tokens-Out", "x-words-out"}, FlushInterval: 100 * time.Millisecond},
			wantCluster: "quotagate", wantUsage: []string{"x-usage-tokens-out", "x-words-out"}, wantFlush: 100 * time.Millisecond},
		{name: "refunds only", settle: Settlement{UsageHeaders: []string{NoUsageHeader}}, wantCluster: "quotagate", wantUsage: nil, wantFlush: 250 * time.Millisecond},
		{name: "own listener", settle: Settlement{Address: "quotagate-als.quotagate:9192"}, wantCluster: SettlementCluster,
			wantUsage: []string{DefaultUsageHeader}, wantFlush: 250 * time.Millisecond, wantAddr: "quotagate-als.quotagate:9192"},
		{name: "off", settle: Settlement{Off: true, Address: "ignored:1"}},
	}
	for _, tt := range tests {
		for _, bootstrap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bootstrap=%v", tt.name, bootstrap), func(t *testing.T) {
				var buf bytes.Buffer
				if err := Generate(&buf, GenerateOptions{Bootstrap: bootstrap, Routes: seedRoutes, Settlement: tt.settle}); err != nil {
					t.Fatal(err)
				}
				hcm, clusters := generatedHCM(t, bootstrap, buf.Bytes())
				als, stripped := settlementOf(t, hcm)
				if tt.wantCluster == "" {
					if als != nil || stripped || strings.Contains(buf.String(), SettlementLoggerName) {
						t.Errorf("settlement off, but the output has the access logger or the header removal:\n%s", buf.String())
					}
					if _, ok := clusters[SettlementCluster]; ok {
						t.Errorf("settlement off, but cluster %s is configured", SettlementCluster)
					}
					return
				}
				checkSettlement(t, "generated", als, tt.wantCluster, tt.wantUsage)
				if !stripped {
					t.Errorf("a client's own %s is not removed before ext_authz", DecisionIDHeader)
				}
				if got := als.GetCommonConfig().GetBufferFlushInterval().AsDuration(); got != tt.wantFlush {
					t.Errorf("buffer_flush_interval %v, want %v", got, tt.wantFlush)
				}
				c, ok := clusters[tt.wantCluster]
				if !ok {
					t.Fatalf("the logger streams to cluster %q, which the output does not configure", tt.wantCluster)
				}
				if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
					t.Errorf("cluster %s does not speak HTTP/2 (gRPC needs it)", c.GetName())
				}
				if tt.wantAddr != "" {
					sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
					if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != tt.wantAddr {
						t.Errorf("settlement cluster at %s, want %s", got, tt.wantAddr)
					}
				}
			})
		}
	}
}

// generatedHCM validates Generate's output and returns its
// HttpConnectionManager settings and its clusters by name.
func generatedHCM(t *testing.T, bootstrap bool, out []byte) (*hcmv3.HttpConnectionManager, map[string]*clusterv3.Cluster) {
	t.Helper()
	clusters := map[string]*clusterv3.Cluster{}
	if bootstrap {
		var b bootstrapv3.Bootstrap
		if err := ValidateMessage(out, &b); err != nil {
			t.Fatalf("generated bootstrap: %v\n%s", err, out)
		}
		for _, c := range b.GetStaticResources().GetClusters() {
			clusters[c.GetName()] = c
		}
		return hcmOf(&b), clusters
	}
	validateSnippets(t, out)
	var top struct {
		HCM      json.RawMessage   `json:"http_connection_manager"`
		Clusters []json.RawMessage `json:"clusters"`
	}
	if err := yaml.Unmarshal(out, &top); err != nil {
		t.Fatal(err)
	}
	for _, raw := range top.Clusters {
		var c clusterv3.Cluster
		if err := ValidateMessage(raw, &c); err != nil {
			t.Fatal(err)
		}
		clusters[c.GetName()] = &c
	}
	hcm := decodeHCM(t, top.HCM)
	for i, l := range hcm.GetAccessLog() {
		if err := check(l, fmt.Sprintf("access_log[%d]", i)); err != nil {
			t.Error(err)
		}
	}
	for i, e := range hcm.GetEarlyHeaderMutationExtensions() {
		if err := check(e, fmt.Sprintf("early_header_mutation_extensions[%d]", i)); err != nil {
			t.Error(err)
		}
	}
	return hcm, clusters
}
