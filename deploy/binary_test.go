package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quotagate/quotagate/telemetry/logtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// quotagateBinary builds the server from the repository root once per
// test run and returns its path.
func quotagateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "quotagate-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "quotagate")
		// Built as build-image.sh builds the image's binary, so that the
		// two share the compiled packages.
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "./cmd/quotagate")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/quotagate: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// startServer runs quotagate serve with the configuration file and extra
// arguments, its listeners on loopback, and waits until it is ready. It
// returns the gRPC and HTTP addresses.
func startServer(t *testing.T, configPath string, args ...string) (grpcAddr, httpAddr string) {
	t.Helper()
	grpcAddr, httpAddr = freeAddr(t), freeAddr(t)
	all := append([]string{"serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr}, args...)
	if configPath != "" {
		all = append(all, "--config", configPath)
	}
	cmd := exec.Command(quotagateBinary(t), all...)
	var stderr logtest.Buffer
	cmd.Stderr = &stderr
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitReady(t, httpAddr, &stderr)
	return grpcAddr, httpAddr
}
