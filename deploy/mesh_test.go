package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/quotagate/quotagate/config"
)

// istioObject is an Istio resource with its spec kept raw, so that the
// spec can be decoded with protojson, which refuses unknown fields (the
// client-go types' own JSON decoding lets them through).
type istioObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

// readYAML reads a YAML file and returns it as JSON.
func readYAML(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return js
}

// decodeIstio decodes an Istio object strictly: the envelope into
// istioObject, the spec with protojson into spec, and the whole into the
// client-go type typed, as a cluster would.
func decodeIstio(t *testing.T, path, kind string, spec proto.Message, typed any) istioObject {
	t.Helper()
	js := readYAML(t, path)
	var obj istioObject
	decodeStrict(t, path, js, &obj)
	if obj.APIVersion != "security.istio.io/v1" || obj.Kind != kind {
		t.Fatalf("%s is %s %s, want security.istio.io/v1 %s", path, obj.APIVersion, obj.Kind, kind)
	}
	if err := protojson.Unmarshal(obj.Spec, spec); err != nil {
		t.Fatalf("%s: spec does not decode strictly as %s: %v", path, kind, err)
	}
	if err := json.Unmarshal(js, typed); err != nil {
		t.Fatalf("%s: istio.io/client-go %s: %v", path, kind, err)
	}
	return obj
}

// TestIstio decodes the Istio objects strictly with Istio's Go API and
// checks them against each other, the Kubernetes Service and the
// configuration: the provider the policy names is declared and points at
// the Service's gRPC port, and the header the RequestAuthentication fills
// from the sub claim is the configuration's trusted identity header. It is
// the one test of envoy/istio: each provider must also make an ext_authz
// filter that Envoy accepts, and the sidecars must normalize paths as
// quotagate's routes table assumes.
func TestIstio(t *testing.T) {
	var op struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		} `json:"spec"`
	}
	decodeStrict(t, "mesh-config.yaml", readYAML(t, "../envoy/istio/mesh-config.yaml"), &op)
	if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
		t.Fatalf("mesh-config.yaml is %s %s, want install.istio.io/v1alpha1 IstioOperator", op.APIVersion, op.Kind)
	}
	var mesh meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(op.Spec.MeshConfig, &mesh); err != nil {
		t.Fatalf("mesh-config.yaml: meshConfig does not decode strictly: %v", err)
	}
	// DECODE_AND_MERGE_SLASHES is normalize_path, merge_slashes and escaped
	// slashes unescaped: the path quotagate's routes table (pathnorm) matches.
	if got := mesh.GetPathNormalization().GetNormalization(); got != meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES {
		t.Errorf("meshConfig.pathNormalization.normalization = %v, want DECODE_AND_MERGE_SLASHES", got)
	}
	if len(mesh.GetExtensionProviders()) == 0 {
		t.Fatal("mesh-config.yaml declares no extension provider")
	}
	for _, p := range mesh.GetExtensionProviders() {
		t.Run(p.GetName(), func(t *testing.T) { checkExtAuthzProvider(t, p.GetEnvoyExtAuthzGrpc()) })
	}

	var policy securityv1beta1.AuthorizationPolicy
	var policyTyped securityv1.AuthorizationPolicy
	pObj := decodeIstio(t, "../envoy/istio/authorization-policy.yaml", "AuthorizationPolicy", &policy, &policyTyped)
	var authn securityv1beta1.RequestAuthentication
	var authnTyped securityv1.RequestAuthentication
	aObj := decodeIstio(t, "../envoy/istio/request-authentication.yaml", "RequestAuthentication", &authn, &authnTyped)

	if policy.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("AuthorizationPolicy action %v, want CUSTOM", policy.GetAction())
	}
	if len(policy.GetSelector().GetMatchLabels()) == 0 {
		t.Errorf("the AuthorizationPolicy selects no workload: it would apply to the whole namespace")
	}
	var provider *meshv1alpha1.MeshConfig_ExtensionProvider
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetName() == policy.GetProvider().GetName() {
			provider = p
		}
	}
	if provider == nil || provider.GetEnvoyExtAuthzGrpc() == nil {
		t.Fatalf("the policy's provider %q is not an envoyExtAuthzGrpc extension provider of the mesh config", policy.GetProvider().GetName())
	}
	m := render(t, "kubernetes/overlays/sqlite")
	grpc := provider.GetEnvoyExtAuthzGrpc()
	wantHost := m.service.Name + "." + m.service.Namespace + ".svc.cluster.local"
	if grpc.GetService() != wantHost || !servicePort(m, grpc.GetPort()) {
		t.Errorf("provider points at %s:%d, want %s on the Service's gRPC port", grpc.GetService(), grpc.GetPort(), wantHost)
	}
	if grpc.GetFailOpen() {
		t.Errorf("provider fails open; quotagate's recipe fails closed")
	}

	// The identity: the RequestAuthentication and the policy cover the same
	// workloads, and the sub claim lands in the trusted identity header.
	if pObj.Metadata.Namespace != aObj.Metadata.Namespace ||
		!mapsEqual(policy.GetSelector().GetMatchLabels(), authn.GetSelector().GetMatchLabels()) {
		t.Errorf("RequestAuthentication %s/%v and AuthorizationPolicy %s/%v select different workloads",
			aObj.Metadata.Namespace, authn.GetSelector().GetMatchLabels(), pObj.Metadata.Namespace, policy.GetSelector().GetMatchLabels())
	}
	file, err := config.Parse([]byte(m.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	id := file.Identity
	if !slices.Contains(id.Sources, config.SourceHeader) || !id.Header.Trusted {
		t.Fatalf("the Kubernetes config's identity %+v does not trust a header, which is how Istio passes the user", id)
	}
	claims := map[string]string{}
	for _, r := range authn.GetJwtRules() {
		if r.GetIssuer() == "" || r.GetJwksUri() == "" {
			t.Errorf("jwtRule %v: want an issuer and a jwksUri", r)
		}
		for _, h := range r.GetOutputClaimToHeaders() {
			claims[h.GetClaim()] = h.GetHeader()
		}
	}
	if !strings.EqualFold(claims["sub"], id.Header.Name) {
		t.Errorf("the sub claim goes to header %q, but quotagate trusts %q", claims["sub"], id.Header.Name)
	}
	if claims["tier"] == "" {
		t.Errorf("no outputClaimToHeaders for the tier claim")
	}
	for _, h := range claims {
		if slices.Contains(id.StripHeaders, strings.ToLower(h)) {
			t.Errorf("header %s is in identity.strip_headers: the app would never see it", h)
		}
	}
}

// checkExtAuthzProvider checks an envoyExtAuthzGrpc provider: a short
// timeout, fail closed with a valid status, the body sent as bytes, and an
// ext_authz filter, built from it as Istio builds one, that passes Envoy's
// validation rules.
func checkExtAuthzProvider(t *testing.T, g *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
	t.Helper()
	if g == nil || g.GetService() == "" || g.GetPort() == 0 {
		t.Fatalf("want envoyExtAuthzGrpc with a service and a port, got %v", g)
	}
	timeout := g.GetTimeout().AsDuration()
	if timeout <= 0 || timeout > time.Second {
		t.Errorf("timeout %v: want a positive duration of at most 1s (Istio's default is 600s)", timeout)
	}
	status, err := strconv.Atoi(g.GetStatusOnError())
	if err != nil {
		t.Fatalf("statusOnError %q: %v", g.GetStatusOnError(), err)
	}
	if g.GetFailOpen() {
		t.Errorf("failOpen: the example must fail closed")
	}
	body := g.GetIncludeRequestBodyInCheck()
	if !body.GetPackAsBytes() {
		t.Errorf("includeRequestBodyInCheck.packAsBytes must be true: a body cut mid-character must still reach quotagate")
	}
	f := &extauthzv3.ExtAuthz{
		TransportApiVersion: corev3.ApiVersion_V3,
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: "outbound|" + strconv.Itoa(int(g.GetPort())) + "||" + g.GetService(),
			}},
			Timeout: durationpb.New(timeout),
		}},
		FailureModeAllow: g.GetFailOpen(),
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode(status)},
	}
	if body != nil {
		f.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: body.GetMaxRequestBytes(),
			AllowPartialMessage: body.GetAllowPartialMessage(), PackAsBytes: body.GetPackAsBytes()}
	}
	if err := f.ValidateAll(); err != nil {
		t.Errorf("the ext_authz filter Istio would generate is invalid: %v", err)
	}
}

// TestEnvoyGateway decodes the Envoy Gateway objects strictly with Envoy
// Gateway's and Gateway API's Go types and checks that the SecurityPolicy
// targets the HTTPRoute and calls quotagate's Service over gRPC, with a
// ReferenceGrant for the namespace crossing.
func TestEnvoyGateway(t *testing.T) {
	var sp egv1a1.SecurityPolicy
	decodeStrict(t, "securitypolicy.yaml", readYAML(t, "envoy-gateway/securitypolicy.yaml"), &sp)
	var route gwv1.HTTPRoute
	decodeStrict(t, "httproute.yaml", readYAML(t, "envoy-gateway/httproute.yaml"), &route)
	var grant gwv1beta1.ReferenceGrant
	decodeStrict(t, "referencegrant.yaml", readYAML(t, "envoy-gateway/referencegrant.yaml"), &grant)
	if sp.APIVersion != "gateway.envoyproxy.io/v1alpha1" || sp.Kind != "SecurityPolicy" ||
		route.APIVersion != "gateway.networking.k8s.io/v1" || route.Kind != "HTTPRoute" ||
		grant.APIVersion != "gateway.networking.k8s.io/v1beta1" || grant.Kind != "ReferenceGrant" {
		t.Fatalf("apiVersion/kind: %s %s, %s %s, %s %s", sp.APIVersion, sp.Kind, route.APIVersion, route.Kind, grant.APIVersion, grant.Kind)
	}

	targets := sp.Spec.GetTargetRefs()
	if len(targets) != 1 || targets[0].Kind != "HTTPRoute" || string(targets[0].Name) != route.Name || sp.Namespace != route.Namespace {
		t.Errorf("SecurityPolicy targets %+v in %s, want the HTTPRoute %s/%s", targets, sp.Namespace, route.Namespace, route.Name)
	}
	ea := sp.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
		t.Fatalf("SecurityPolicy extAuth %+v: want grpc", ea)
	}
	if ea.FailOpen == nil || *ea.FailOpen {
		t.Errorf("extAuth.failOpen must be set to false")
	}
	m := render(t, "kubernetes/overlays/sqlite")
	refs := ea.GRPC.BackendRefs
	if len(refs) != 1 {
		t.Fatalf("extAuth.grpc.backendRefs %+v: want quotagate's Service", refs)
	}
	ref := refs[0]
	if string(ref.Name) != m.service.Name || ref.Namespace == nil || string(*ref.Namespace) != m.service.Namespace ||
		ref.Port == nil || !servicePort(m, uint32(*ref.Port)) {
		t.Errorf("backendRef %+v, want Service %s/%s on its gRPC port", ref, m.service.Namespace, m.service.Name)
	}
	granted := false
	for _, f := range grant.Spec.From {
		for _, to := range grant.Spec.To {
			if string(f.Kind) == "SecurityPolicy" && string(f.Namespace) == sp.Namespace && grant.Namespace == m.service.Namespace &&
				string(to.Kind) == "Service" && (to.Name == nil || string(*to.Name) == m.service.Name) {
				granted = true
			}
		}
	}
	if !granted {
		t.Errorf("no ReferenceGrant lets the SecurityPolicy in %s reach Service %s/%s", sp.Namespace, m.service.Namespace, m.service.Name)
	}
}

// servicePort reports whether port is the Service's gRPC port.
func servicePort(m manifests, port uint32) bool {
	for _, p := range m.service.Spec.Ports {
		if uint32(p.Port) == port && strings.HasPrefix(p.Name, "grpc-") {
			return true
		}
	}
	return false
}

func mapsEqual(a, b map[string]string) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return len(a) > 0 && bytes.Equal(ja, jb)
}
