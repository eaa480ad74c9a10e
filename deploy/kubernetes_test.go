package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/quotagate/quotagate/config"
)

// manifests are the objects one overlay renders to, decoded strictly.
type manifests struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	pdb            *policyv1.PodDisruptionBudget
	networkPolicy  *networkingv1.NetworkPolicy
	pvcs           map[string]*corev1.PersistentVolumeClaim
	namespace      *corev1.Namespace
	serviceAccount *corev1.ServiceAccount
}

// decodeStrict decodes JSON into v, failing on a field v does not have,
// as `kubectl apply --validate=strict` would.
func decodeStrict(t *testing.T, what string, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not decode strictly: %v\n%s", what, err, data)
	}
	// Some API types decode parts of themselves with their own
	// UnmarshalJSON, which does not refuse unknown fields: a field of the
	// input that does not come back when the object is encoded again was
	// dropped.
	back, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var in, out any
	if err := json.Unmarshal(data, &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(back, &out); err != nil {
		t.Fatal(err)
	}
	if path := droppedField(in, out, ""); path != "" {
		t.Fatalf("%s does not decode strictly: unknown field %s", what, path)
	}
}

// droppedField returns the path of the first object key of in that out
// lacks, or "".
func droppedField(in, out any, path string) string {
	switch iv := in.(type) {
	case map[string]any:
		ov, _ := out.(map[string]any)
		for k, v := range iv {
			o, ok := ov[k]
			if !ok {
				return path + "." + k
			}
			if p := droppedField(v, o, path+"."+k); p != "" {
				return p
			}
		}
	case []any:
		ov, _ := out.([]any)
		for i, v := range iv {
			if i >= len(ov) {
				return fmt.Sprintf("%s[%d]", path, i)
			}
			if p := droppedField(v, ov[i], fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

// render builds an overlay with kustomize's Go API and decodes every
// object into its k8s.io/api type.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := manifests{pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	for _, r := range rm.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		what := r.GetKind() + "/" + r.GetName()
		if r.GetNamespace() != "quotagate" && r.GetKind() != "Namespace" {
			t.Errorf("%s is in namespace %q, want quotagate", what, r.GetNamespace())
		}
		var v any
		switch r.GetKind() {
		case "Deployment":
			m.deployment = &appsv1.Deployment{}
			v = m.deployment
		case "Service":
			m.service = &corev1.Service{}
			v = m.service
		case "ConfigMap":
			m.configMap = &corev1.ConfigMap{}
			v = m.configMap
		case "Secret":
			m.secret = &corev1.Secret{}
			v = m.secret
		case "PodDisruptionBudget":
			m.pdb = &policyv1.PodDisruptionBudget{}
			v = m.pdb
		case "NetworkPolicy":
			m.networkPolicy = &networkingv1.NetworkPolicy{}
			v = m.networkPolicy
		case "PersistentVolumeClaim":
			pvc := &corev1.PersistentVolumeClaim{}
			m.pvcs[r.GetName()] = pvc
			v = pvc
		case "Namespace":
			m.namespace = &corev1.Namespace{}
			v = m.namespace
		case "ServiceAccount":
			m.serviceAccount = &corev1.ServiceAccount{}
			v = m.serviceAccount
		default:
			t.Fatalf("%s: a kind this test does not know; decode and check it here", what)
		}
		decodeStrict(t, what, data, v)
	}
	for name, got := range map[string]bool{"Deployment": m.deployment != nil, "Service": m.service != nil, "ConfigMap": m.configMap != nil,
		"Secret": m.secret != nil, "PodDisruptionBudget": m.pdb != nil, "NetworkPolicy": m.networkPolicy != nil,
		"Namespace": m.namespace != nil, "ServiceAccount": m.serviceAccount != nil} {
		if !got {
			t.Errorf("%s renders no %s", dir, name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestKubernetesOverlays(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		replicas int32
		redis    bool
	}{
		{name: "sqlite", dir: "kubernetes/overlays/sqlite", replicas: 1},
		{name: "redis", dir: "kubernetes/overlays/redis", replicas: 3, redis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := render(t, tt.dir)
			d := m.deployment
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]
			if d.Spec.Replicas == nil || *d.Spec.Replicas != tt.replicas {
				t.Errorf("replicas = %v, want %d", d.Spec.Replicas, tt.replicas)
			}
			checkSelectors(t, m)
			file, configPath := checkConfigMount(t, m, c, pod)
			checkPorts(t, m, c, file)
			checkSecurity(t, pod, c)
			checkSecretMount(t, m, c, pod)
			if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= file.Server.GracePeriod.D() {
				t.Errorf("terminationGracePeriodSeconds %v does not cover server.grace_period %v and the final flush", grace, file.Server.GracePeriod.D())
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources %v: want cpu and memory requests and a memory limit", c.Resources)
			}
			if got := file.Store.Kind == "redis" && file.Store.Redis.Addr != ""; got != tt.redis {
				t.Errorf("store.kind %q, store.redis.addr %q; want the Redis store in the redis overlay only", file.Store.Kind, file.Store.Redis.Addr)
			}
			dataDir := flagValue(c.Args, "--data-dir")
			if tt.redis {
				if dataDir != "" {
					t.Errorf("redis overlay keeps state in --data-dir %s; replicas must share Redis", dataDir)
				}
			} else {
				checkDataVolume(t, m, c, pod, dataDir)
				if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
					t.Errorf("sqlite overlay strategy %q: a ReadWriteOnce volume needs Recreate", d.Spec.Strategy.Type)
				}
			}
			// The real server: the configuration validates, and the probes'
			// paths answer 200 on the HTTP listener.
			if out, err := exec.Command(quotagateBinary(t), "config", "validate", configPath).CombinedOutput(); err != nil {
				t.Errorf("quotagate config validate on the ConfigMap's config.yaml: %v\n%s", err, out)
			}
			checkProbes(t, c, configPath, tt.redis)
		})
	}
}

// checkSelectors checks that the Deployment's, Service's, PDB's and
// NetworkPolicy's selectors all select the pod template's labels.
func checkSelectors(t *testing.T, m manifests) {
	t.Helper()
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	sel := func(what string, ls map[string]string) {
		if len(ls) == 0 {
			t.Errorf("%s has an empty selector", what)
			return
		}
		if !labels.SelectorFromSet(ls).Matches(podLabels) {
			t.Errorf("%s selector %v does not select the pods %v", what, ls, podLabels)
		}
	}
	sel("Deployment", m.deployment.Spec.Selector.MatchLabels)
	sel("Service", m.service.Spec.Selector)
	sel("PodDisruptionBudget", m.pdb.Spec.Selector.MatchLabels)
	sel("NetworkPolicy", m.networkPolicy.Spec.PodSelector.MatchLabels)
	if sa := m.deployment.Spec.Template.Spec.ServiceAccountName; sa != m.serviceAccount.Name {
		t.Errorf("pods run as ServiceAccount %q, the manifests define %q", sa, m.serviceAccount.Name)
	}
}

// checkConfigMount checks that --config names the ConfigMap's config.yaml
// as mounted, and returns the parsed configuration and a copy on disk.
func checkConfigMount(t *testing.T, m manifests, c corev1.Container, pod corev1.PodSpec) (*config.File, string) {
	t.Helper()
	arg := flagValue(c.Args, "--config")
	if arg == "" {
		t.Fatalf("args %q have no --config", c.Args)
	}
	vol, key := mountedKey(t, c, pod, arg)
	if vol.ConfigMap == nil || vol.ConfigMap.Name != m.configMap.Name {
		t.Fatalf("--config %s is not in the ConfigMap %s", arg, m.configMap.Name)
	}
	data, ok := m.configMap.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q (--config %s)", m.configMap.Name, key, arg)
	}
	file, err := config.Parse([]byte(data))
	if err != nil {
		t.Fatalf("the ConfigMap's %s: %v", key, err)
	}
	path := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, path
}

// mountedKey finds the volume mounted over path and the key of the file.
func mountedKey(t *testing.T, c corev1.Container, pod corev1.PodSpec, path string) (corev1.Volume, string) {
	t.Helper()
	best := ""
	var name string
	for _, vm := range c.VolumeMounts {
		if strings.HasPrefix(path, vm.MountPath+"/") && len(vm.MountPath) > len(best) {
			best, name = vm.MountPath, vm.Name
		}
	}
	if best == "" {
		t.Fatalf("no volume is mounted over %s", path)
	}
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v, strings.TrimPrefix(path, best+"/")
		}
	}
	t.Fatalf("volumeMount %s names no volume", name)
	return corev1.Volume{}, ""
}

// checkPorts checks that the container ports are the listeners of the
// configuration and of the image, that the Service targets them by name,
// and that the gRPC port's name selects gRPC in Istio.
func checkPorts(t *testing.T, m manifests, c corev1.Container, file *config.File) {
	t.Helper()
	image := imageListeners(t)
	want := map[string]int32{
		"grpc": portOf(t, "server.grpc_addr", file.Server.GRPCAddr),
		"http": portOf(t, "server.http_addr", file.Server.HTTPAddr),
	}
	for k, p := range want {
		if image[k] != p {
			t.Errorf("the image's %s listener is on port %d, the configuration's on %d: the Containerfile's QUOTAGATE_* variables win, keep them equal", k, image[k], p)
		}
	}
	byName := map[string]int32{}
	for _, p := range c.Ports {
		byName[p.Name] = p.ContainerPort
	}
	if byName["grpc-authz"] != want["grpc"] || byName["http-monitor"] != want["http"] {
		t.Errorf("container ports %v, want grpc-authz=%d and http-monitor=%d (the listeners)", c.Ports, want["grpc"], want["http"])
	}
	for _, sp := range m.service.Spec.Ports {
		if sp.TargetPort.String() == "" || byName[sp.TargetPort.String()] == 0 && int32(sp.TargetPort.IntValue()) == 0 {
			t.Errorf("Service port %s targets %q, which is no container port", sp.Name, sp.TargetPort.String())
		}
	}
	var grpcPort *corev1.ServicePort
	for i, sp := range m.service.Spec.Ports {
		if byName[sp.TargetPort.String()] == want["grpc"] {
			grpcPort = &m.service.Spec.Ports[i]
		}
	}
	if grpcPort == nil || !strings.HasPrefix(grpcPort.Name, "grpc-") || grpcPort.Port != 9191 {
		t.Errorf("Service gRPC port %+v: want port 9191 (what the Istio provider and SecurityPolicy name) named grpc-... for Istio's protocol selection", grpcPort)
	}
	for _, rule := range m.networkPolicy.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || byName[p.Port.String()] == 0 {
				t.Errorf("NetworkPolicy port %v is no container port", p.Port)
			}
		}
	}
}

// imageListeners reads the listener ports the Containerfile sets.
func imageListeners(t *testing.T) map[string]int32 {
	t.Helper()
	data, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for k, re := range map[string]*regexp.Regexp{
		"grpc": regexp.MustCompile(`QUOTAGATE_GRPC_ADDR=(\S+)`),
		"http": regexp.MustCompile(`QUOTAGATE_HTTP_ADDR=(\S+)`),
	} {
		m := re.FindSubmatch(data)
		if m == nil {
			t.Fatalf("the Containerfile sets no %s listener", k)
		}
		out[k] = portOf(t, "Containerfile "+k, string(m[1]))
	}
	return out
}

func portOf(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Fatalf("%s %q is not host:port", what, addr)
	}
	return int32(n)
}

// checkSecurity checks the pod and container security settings.
func checkSecurity(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser != 65532 {
		t.Errorf("runAsUser %d: the image's user is 65532", *psc.RunAsUser)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, all capabilities dropped", sc)
	}
	// A ConfigMap or Secret volume is read-only: the kubelet cannot make
	// the mount point of another volume inside it.
	kinds := map[string]bool{}
	for _, v := range pod.Volumes {
		kinds[v.Name] = v.ConfigMap != nil || v.Secret != nil
	}
	for _, outer := range c.VolumeMounts {
		for _, inner := range c.VolumeMounts {
			if kinds[outer.Name] && inner.Name != outer.Name && strings.HasPrefix(inner.MountPath, outer.MountPath+"/") {
				t.Errorf("volume %s is mounted at %s, inside the read-only volume %s at %s", inner.Name, inner.MountPath, outer.Name, outer.MountPath)
			}
		}
	}
	writable := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/tmp" && !vm.ReadOnly {
			writable = true
		}
	}
	if !writable {
		t.Errorf("no writable /tmp: with a read-only root, SQLite and Go need one")
	}
}

// checkSecretMount checks that the age identity file quotagate is pointed
// at is a key of the Secret.
func checkSecretMount(t *testing.T, m manifests, c corev1.Container, pod corev1.PodSpec) {
	t.Helper()
	var path string
	for _, e := range c.Env {
		if e.Name == config.EnvIdentityFile {
			path = e.Value
		}
	}
	if path == "" {
		t.Fatalf("no %s in the container's env", config.EnvIdentityFile)
	}
	vol, key := mountedKey(t, c, pod, path)
	if vol.Secret == nil || vol.Secret.SecretName != m.secret.Name {
		t.Fatalf("%s=%s is not in the Secret %s", config.EnvIdentityFile, path, m.secret.Name)
	}
	if _, ok := m.secret.StringData[key]; !ok {
		if _, ok := m.secret.Data[key]; !ok {
			t.Errorf("Secret %s has no key %q", m.secret.Name, key)
		}
	}
	if _, ok := m.secret.StringData["admin-token"]; !ok {
		t.Errorf("Secret %s has no admin-token", m.secret.Name)
	}
}

// checkDataVolume checks that --data-dir is a mounted PersistentVolumeClaim
// of the overlay.
func checkDataVolume(t *testing.T, m manifests, c corev1.Container, pod corev1.PodSpec, dataDir string) {
	t.Helper()
	if dataDir == "" {
		t.Fatalf("args %q have no --data-dir", c.Args)
	}
	vol, _ := mountedKey(t, c, pod, dataDir+"/ledger.db")
	if vol.PersistentVolumeClaim == nil || m.pvcs[vol.PersistentVolumeClaim.ClaimName] == nil {
		t.Errorf("--data-dir %s is not on a PersistentVolumeClaim of the overlay", dataDir)
	}
}

// checkProbes runs the server with the configuration (a Redis overlay's
// store is replaced by memory, there being no Redis here) and checks that
// every probe's path answers 200 on the listener of its port.
func checkProbes(t *testing.T, c corev1.Container, configPath string, redis bool) {
	t.Helper()
	if redis {
		data, err := os.ReadFile(configPath)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		delete(doc["store"].(map[string]any), "redis")
		delete(doc["store"].(map[string]any), "kind")
		out, _ := yaml.Marshal(doc)
		if err := os.WriteFile(configPath, out, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, httpAddr := startServer(t, configPath)
	probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe}
	for _, name := range []string{"liveness", "readiness"} {
		if probes[name] == nil {
			t.Errorf("no %s probe", name)
		}
	}
	for name, p := range probes {
		if p == nil {
			continue
		}
		if p.HTTPGet == nil || p.HTTPGet.Port.String() != "http-monitor" {
			t.Errorf("%s probe %+v: want an HTTP GET on the http-monitor port", name, p.ProbeHandler)
			continue
		}
		resp, err := http.Get("http://" + httpAddr + p.HTTPGet.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s probe path %s answers %d, want 200", name, p.HTTPGet.Path, resp.StatusCode)
		}
	}
}

// flagValue returns the value of --name in args ("--name value" or
// "--name=value").
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestServiceMonitor decodes the optional ServiceMonitor strictly (a
// mirror of the fields it uses) and checks it selects the Service and
// scrapes its metrics port.
func TestServiceMonitor(t *testing.T) {
	data, err := os.ReadFile("kubernetes/components/servicemonitor/servicemonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port     string `json:"port"`
				Path     string `json:"path"`
				Interval string `json:"interval"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(data, &sm); err != nil {
		t.Fatal(err)
	}
	m := render(t, "kubernetes/overlays/sqlite")
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" {
		t.Errorf("apiVersion/kind %s/%s", sm.APIVersion, sm.Kind)
	}
	if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(m.service.Labels)) {
		t.Errorf("selector %v does not select the Service's labels %v", sm.Spec.Selector.MatchLabels, m.service.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Port != "http-monitor" {
		t.Errorf("endpoints %+v: want /metrics on the Service's http-monitor port", sm.Spec.Endpoints)
	}
}
