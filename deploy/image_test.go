package deploy

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quotagate/quotagate/e2e/freeport"
	"github.com/quotagate/quotagate/telemetry/logtest"
)

// ociConfig is the part of an OCI image configuration the test checks.
type ociConfig struct {
	Config struct {
		User         string              `json:"User"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Env          []string            `json:"Env"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		WorkingDir   string              `json:"WorkingDir"`
		Labels       map[string]string   `json:"Labels"`
	} `json:"config"`
}

// TestImage builds the image with deploy/build-image.sh, saves it as an
// OCI layout, checks its configuration, unpacks its layers into a root
// filesystem and runs the entrypoint from there (chrooted, as the image's
// user, when the test runs as root) to answer a real Check.
func TestImage(t *testing.T) {
	builder := ""
	for _, b := range []string{"buildah", "podman"} {
		if _, err := exec.LookPath(b); err == nil {
			builder = b
			break
		}
	}
	if builder == "" {
		t.Fatal("neither buildah nor podman is installed: run `bash .ci/deps/buildah.sh` (make test-deps runs it)")
	}
	tag := "localhost/quotagate:deploy-test"
	run(t, "", nil, "./build-image.sh", tag)
	t.Cleanup(func() { exec.Command(builder, "rmi", "-f", tag).Run() })
	layout := filepath.Join(t.TempDir(), "layout")
	run(t, "", nil, builder, "push", "--quiet", tag, "oci:"+layout+":test")

	cfg, layers := readLayout(t, layout)
	c := cfg.Config
	uid, gid := parseUser(t, c.User)
	if uid == 0 {
		t.Errorf("image user %q is root, want a non-root numeric uid (Kubernetes runAsNonRoot needs one)", c.User)
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/quotagate" || len(c.Cmd) == 0 || c.Cmd[0] != "serve" {
		t.Errorf("entrypoint %q cmd %q, want [/usr/local/bin/quotagate] [serve ...]", c.Entrypoint, c.Cmd)
	}
	for _, p := range []string{"9191/tcp", "8080/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("image does not expose %s (exposed: %v)", p, c.ExposedPorts)
		}
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.created"} {
		if c.Labels[l] == "" {
			t.Errorf("image has no %s label", l)
		}
	}
	env := map[string]string{}
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["QUOTAGATE_GRPC_ADDR"] != "0.0.0.0:9191" || env["QUOTAGATE_HTTP_ADDR"] != "0.0.0.0:8080" {
		t.Errorf("image env %v: want the listeners on 0.0.0.0:9191 and 0.0.0.0:8080, as EXPOSEd", c.Env)
	}

	root := filepath.Join(t.TempDir(), "rootfs")
	for _, l := range layers {
		untarLayer(t, l, root)
	}
	checkRootfs(t, root, uid)

	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := &exec.Cmd{Path: filepath.Join(root, c.Entrypoint[0]), Args: append(c.Entrypoint[:1:1], c.Cmd...)}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// The container's listeners, moved to loopback ports of this host.
	cmd.Env = append(cmd.Env, "QUOTAGATE_GRPC_ADDR="+grpcAddr, "QUOTAGATE_HTTP_ADDR="+httpAddr)
	if os.Geteuid() == 0 {
		// As a container runtime would: the image's root, user and workdir.
		cmd.Path = c.Entrypoint[0]
		cmd.Dir = c.WorkingDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	} else {
		t.Logf("not root: running %s from the unpacked image without chroot", c.Entrypoint[0])
	}
	var stderr logtest.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the image's entrypoint: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitReady(t, httpAddr, &stderr)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/v1/items", Host: "api", Headers: map[string]string{"x-user-id": "demo-free"},
		}},
	}})
	if err != nil {
		t.Fatalf("Check against the image's entrypoint: %v\n%s", err, stderr.String())
	}
	if resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
		t.Fatalf("Check = %v, want OK for demo-free's first call", resp)
	}
}

// run runs a command in dir (empty: this directory) and fails the test
// with its output if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// readLayout reads an OCI image layout with one image: its configuration
// and the paths of its layer blobs, base first.
func readLayout(t *testing.T, dir string) (ociConfig, []string) {
	t.Helper()
	blob := func(digest string) string {
		algo, hex, ok := strings.Cut(digest, ":")
		if !ok {
			t.Fatalf("digest %q", digest)
		}
		return filepath.Join(dir, "blobs", algo, hex)
	}
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("OCI layout has %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string } `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	readJSON(t, blob(index.Manifests[0].Digest), &manifest)
	var cfg ociConfig
	readJSON(t, blob(manifest.Config.Digest), &cfg)
	var layers []string
	for _, l := range manifest.Layers {
		layers = append(layers, blob(l.Digest))
	}
	return cfg, layers
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// untarLayer extracts one layer (tar, gzip-compressed or not) into root,
// keeping modes and, as root, owners. Whiteouts are not expected in a
// FROM scratch image and fail the test.
func untarLayer(t *testing.T, path, root string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if zr, err := gzip.NewReader(f); err == nil {
		r = zr
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("layer %s: %v", path, err)
		}
		name := filepath.Clean("/" + h.Name)
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			t.Fatalf("layer has a whiteout %s: a FROM scratch image should not", h.Name)
		}
		dst := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			out.Close()
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				t.Fatal(err)
			}
		default:
			continue
		}
		if os.Geteuid() == 0 {
			os.Lchown(dst, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeDir {
			os.Chmod(dst, os.FileMode(h.Mode)&os.ModePerm|os.FileMode(h.Mode)&os.ModeSticky)
		}
	}
}

// checkRootfs checks what the image must carry: a static binary, a CA
// bundle, and the user's passwd entry.
func checkRootfs(t *testing.T, root string, uid uint32) {
	t.Helper()
	bin, err := elf.Open(filepath.Join(root, "usr/local/bin/quotagate"))
	if err != nil {
		t.Fatalf("the entrypoint is not an ELF binary: %v", err)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary is dynamically linked (PT_INTERP): build it with CGO_ENABLED=0")
		}
	}
	bin.Close()
	pem, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatalf("no CA bundle: %v", err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(pem) {
		t.Errorf("the CA bundle holds no certificate")
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), ":x:"+strconv.FormatUint(uint64(uid), 10)+":") {
		t.Errorf("/etc/passwd has no entry for uid %d:\n%s", uid, passwd)
	}
}

// parseUser parses an image's "uid:gid" User; a name is refused, since
// Kubernetes cannot check that a named user is not root.
func parseUser(t *testing.T, u string) (uint32, uint32) {
	t.Helper()
	us, gs, _ := strings.Cut(u, ":")
	uid, err1 := strconv.ParseUint(us, 10, 32)
	gid, err2 := strconv.ParseUint(gs, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("image user %q: want numeric uid:gid", u)
	}
	return uint32(uid), uint32(gid)
}

// freeAddr returns a loopback address for a child process to listen on,
// from below the kernel's ephemeral range (see freeport.Port): a
// port found by listening on port 0 and closing is the kernel's to hand
// out again meanwhile.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitReady waits until /readyz answers 200.
func waitReady(t *testing.T, httpAddr string, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready on %s after 20s: %v\n%s", httpAddr, err, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
