package envoy

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"
)

// The Istio resources are not Envoy bootstraps and Istio's Go API is not a
// dependency, so these mirror the fields the examples use; strict decoding
// catches a misspelled or misplaced field.

type istioOperator struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		MeshConfig struct {
			PathNormalization struct {
				Normalization string `json:"normalization"`
			} `json:"pathNormalization"`
			ExtensionProviders []struct {
				Name              string `json:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service                   string `json:"service"`
					Port                      uint32 `json:"port"`
					Timeout                   string `json:"timeout"`
					FailOpen                  bool   `json:"failOpen"`
					StatusOnError             string `json:"statusOnError"`
					IncludeRequestBodyInCheck *struct {
						MaxRequestBytes     uint32 `json:"maxRequestBytes"`
						AllowPartialMessage bool   `json:"allowPartialMessage"`
						PackAsBytes         bool   `json:"packAsBytes"`
					} `json:"includeRequestBodyInCheck"`
				} `json:"envoyExtAuthzGrpc"`
				EnvoyHTTPAls *struct {
					Service                        string   `json:"service"`
					Port                           uint32   `json:"port"`
					LogName                        string   `json:"logName"`
					AdditionalRequestHeadersToLog  []string `json:"additionalRequestHeadersToLog"`
					AdditionalResponseHeadersToLog []string `json:"additionalResponseHeadersToLog"`
				} `json:"envoyHttpAls"`
			} `json:"extensionProviders"`
		} `json:"meshConfig"`
	} `json:"spec"`
}

// istioObject is the envelope of a namespaced Istio object.
type istioObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// workloadSelector is the selector of an Istio policy.
type workloadSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type authorizationPolicy struct {
	istioObject
	Spec struct {
		Selector workloadSelector `json:"selector"`
		Action   string           `json:"action"`
		Provider struct {
			Name string `json:"name"`
		} `json:"provider"`
		Rules []struct {
			To []struct {
				Operation struct {
					Paths    []string `json:"paths"`
					NotPaths []string `json:"notPaths"`
					Methods  []string `json:"methods"`
				} `json:"operation"`
			} `json:"to"`
		} `json:"rules"`
	} `json:"spec"`
}

func readStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestIstioExtensionProviderIsAValidExtAuthz(t *testing.T) {
	var op istioOperator
	readStrict(t, "istio/mesh-config.yaml", &op)
	if op.Kind != "IstioOperator" || len(op.Spec.MeshConfig.ExtensionProviders) == 0 {
		t.Fatalf("mesh-config.yaml: want an IstioOperator with extension providers, got %+v", op)
	}
	for _, p := range op.Spec.MeshConfig.ExtensionProviders {
		if p.EnvoyHTTPAls != nil {
			continue // TestIstioSettlementProvider
		}
		t.Run(p.Name, func(t *testing.T) {
			g := p.EnvoyExtAuthzGrpc
			if g == nil || g.Service == "" || g.Port == 0 {
				t.Fatalf("provider %q: want envoyExtAuthzGrpc with a service and a port", p.Name)
			}
			timeout, err := time.ParseDuration(g.Timeout)
			if err != nil || timeout <= 0 || timeout > time.Second {
				t.Errorf("timeout %q: want a positive duration of at most 1s (Istio's default is 600s)", g.Timeout)
			}
			status, err := strconv.Atoi(g.StatusOnError)
			if err != nil {
				t.Fatalf("statusOnError %q: %v", g.StatusOnError, err)
			}
			if g.FailOpen {
				t.Errorf("failOpen: the example must fail closed")
			}
			// Build the ext_authz filter Istio generates from the provider,
			// and run Envoy's validation rules on it.
			f := &extauthzv3.ExtAuthz{
				TransportApiVersion: corev3.ApiVersion_V3,
				Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
						ClusterName: "outbound|" + strconv.Itoa(int(g.Port)) + "||" + g.Service,
					}},
					Timeout: durationpb.New(timeout),
				}},
				FailureModeAllow: g.FailOpen,
				StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			}
			if b := g.IncludeRequestBodyInCheck; b != nil {
				f.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: b.MaxRequestBytes, AllowPartialMessage: b.AllowPartialMessage, PackAsBytes: b.PackAsBytes}
			}
			if err := check(f, "ExtAuthz"); err != nil {
				t.Errorf("the ext_authz filter Istio would generate is invalid: %v", err)
			}
		})
	}
}

func TestIstioAuthorizationPolicy(t *testing.T) {
	var op istioOperator
	readStrict(t, "istio/mesh-config.yaml", &op)
	var ap authorizationPolicy
	readStrict(t, "istio/authorization-policy.yaml", &ap)
	if ap.Kind != "AuthorizationPolicy" || ap.Spec.Action != "CUSTOM" {
		t.Errorf("want a CUSTOM AuthorizationPolicy, got kind %q action %q", ap.Kind, ap.Spec.Action)
	}
	found := false
	for _, p := range op.Spec.MeshConfig.ExtensionProviders {
		found = found || p.Name == ap.Spec.Provider.Name
	}
	if !found {
		t.Errorf("provider %q is not declared in mesh-config.yaml", ap.Spec.Provider.Name)
	}
	if len(ap.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("the policy selects no workload: it would apply to the whole namespace")
	}
}

type telemetry struct {
	istioObject
	Spec struct {
		Selector      workloadSelector `json:"selector"`
		AccessLogging []struct {
			Match struct {
				Mode string `json:"mode"`
			} `json:"match"`
			Providers []struct {
				Name string `json:"name"`
			} `json:"providers"`
		} `json:"accessLogging"`
	} `json:"spec"`
}

// TestIstioSettlementProvider checks that the mesh declares an envoyHttpAls
// provider on the ext_authz provider's service and port, logging the
// usage header, that the access logger Istio builds from it passes
// Envoy's rules, and that telemetry.yaml turns it on, inbound only, for
// the workloads the AuthorizationPolicy meters.
func TestIstioSettlementProvider(t *testing.T) {
	var op istioOperator
	readStrict(t, "istio/mesh-config.yaml", &op)
	var ap authorizationPolicy
	readStrict(t, "istio/authorization-policy.yaml", &ap)
	var tel telemetry
	readStrict(t, "istio/telemetry.yaml", &tel)

	var authzService string
	var authzPort uint32
	als := map[string]bool{}
	for _, p := range op.Spec.MeshConfig.ExtensionProviders {
		if g := p.EnvoyExtAuthzGrpc; g != nil && p.Name == ap.Spec.Provider.Name {
			authzService, authzPort = g.Service, g.Port
		}
		a := p.EnvoyHTTPAls
		if a == nil {
			continue
		}
		als[p.Name] = true
		if !slices.Contains(a.AdditionalResponseHeadersToLog, DefaultUsageHeader) {
			t.Errorf("provider %s logs response headers %v, want %s", p.Name, a.AdditionalResponseHeadersToLog, DefaultUsageHeader)
		}
		if a.LogName != SettlementLogName {
			t.Errorf("provider %s logName %q, want %q", p.Name, a.LogName, SettlementLogName)
		}
		// The access logger Istio generates from the provider.
		l := &grpclogv3.HttpGrpcAccessLogConfig{
			CommonConfig: &grpclogv3.CommonGrpcAccessLogConfig{
				LogName:             a.LogName,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
					ClusterName: "outbound|" + strconv.Itoa(int(a.Port)) + "||" + a.Service,
				}}},
			},
			AdditionalRequestHeadersToLog:  a.AdditionalRequestHeadersToLog,
			AdditionalResponseHeadersToLog: a.AdditionalResponseHeadersToLog,
		}
		if err := check(l, "HttpGrpcAccessLogConfig"); err != nil {
			t.Errorf("provider %s: the access logger Istio would generate is invalid: %v", p.Name, err)
		}
		if a.Service != authzService || a.Port != authzPort {
			t.Errorf("provider %s streams to %s:%d, want quotagate's ext_authz service %s:%d", p.Name, a.Service, a.Port, authzService, authzPort)
		}
	}
	if len(als) == 0 {
		t.Fatal("mesh-config.yaml declares no envoyHttpAls provider: quotagate would never settle a charge")
	}

	if tel.APIVersion != "telemetry.istio.io/v1" || tel.Kind != "Telemetry" {
		t.Errorf("telemetry.yaml is %s %s, want telemetry.istio.io/v1 Telemetry", tel.APIVersion, tel.Kind)
	}
	if tel.Metadata.Namespace != ap.Metadata.Namespace || !maps.Equal(tel.Spec.Selector.MatchLabels, ap.Spec.Selector.MatchLabels) || len(ap.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("Telemetry selects %s/%v, AuthorizationPolicy %s/%v: want the same workloads",
			tel.Metadata.Namespace, tel.Spec.Selector.MatchLabels, ap.Metadata.Namespace, ap.Spec.Selector.MatchLabels)
	}
	on := false
	for _, l := range tel.Spec.AccessLogging {
		for _, p := range l.Providers {
			if als[p.Name] {
				on = true
				if l.Match.Mode != "SERVER" {
					t.Errorf("provider %s is on in mode %q; want SERVER, the requests ext_authz decided", p.Name, l.Match.Mode)
				}
			}
		}
	}
	if !on {
		t.Errorf("telemetry.yaml does not turn on any of the settlement providers %v", als)
	}
}
