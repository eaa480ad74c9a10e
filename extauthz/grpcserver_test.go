package extauthz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// startGRPC serves s on a bufconn listener and returns a client connection.
func startGRPC(t testing.TB, s *Server, o GRPCOptions) (*grpc.ClientConn, *grpc.Server, func() bool) {
	t.Helper()
	return startGRPCRegistered(t, s, o)
}

// startGRPCRegistered is startGRPC with more services registered.
func startGRPCRegistered(t testing.TB, s *Server, o GRPCOptions, register ...func(*grpc.Server)) (*grpc.ClientConn, *grpc.Server, func() bool) {
	t.Helper()
	gs, hs, err := s.NewGRPCServer(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range register {
		r(gs)
	}
	lis := bufconn.Listen(1 << 20)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return conn, gs, func() bool { return Drain(gs, hs, 5*time.Second) }
}

func TestGRPCCheckAndHealth(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{StripHeaders: []string{"x-tier"}})
	conn, _, _ := startGRPC(t, s, GRPCOptions{Reflection: true})
	ctx := context.Background()

	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, resp.GetStatus(), err)
		}
	}

	client := authv3.NewAuthorizationClient(conn)
	req := envoyCheck(strings.Repeat("word ", 3000), map[string]string{"x-user-id": "sam", "x-tier": "enterprise", "content-length": "15000"},
		map[string]string{"action": "translate"}, nil)
	resp, err := client.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
		t.Fatalf("response = %v", resp)
	}
	if got := headerValue(ok.GetResponseHeadersToAdd(), HeaderCost); got != "15" {
		t.Errorf("cost header = %q, want 15", got)
	}
	if got := ok.GetHeadersToRemove(); len(got) != 1 || got[0] != "x-tier" {
		t.Errorf("headers_to_remove = %v", got)
	}
	if md := resp.GetDynamicMetadata().AsMap(); md["tier"] != "standard" || md["cost"] != float64(15) {
		t.Errorf("dynamic metadata = %v", md)
	}

	resp, err = client.Check(ctx, envoyCheck("", nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("no identity: %v", resp)
	}
}

func headerValue(opts []*corev3.HeaderValueOption, key string) string {
	for _, o := range opts {
		if o.GetHeader().GetKey() == key {
			return o.GetHeader().GetValue()
		}
	}
	return ""
}

// slowServer delays every Check until release is closed.
type slowServer struct {
	authv3.UnimplementedAuthorizationServer
	started chan struct{}
	release chan struct{}
}

func (s *slowServer) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	close(s.started)
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &authv3.CheckResponse{}, nil
}

func TestDrain(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{})
	conn, _, drain := startGRPC(t, s, GRPCOptions{})
	health := healthpb.NewHealthClient(conn)
	ctx := context.Background()

	watchCtx, stopWatch := context.WithCancel(ctx)
	watch, err := health.Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before drain: %v, %v", first.GetStatus(), err)
	}
	forced := make(chan bool)
	go func() { forced <- drain() }()
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("during drain: %v, %v", next.GetStatus(), err)
	}
	stopWatch() // a watch is a stream that would hold the drain open
	if <-forced {
		t.Error("drain ran out of grace with nothing slow in flight")
	}
	_, err = authv3.NewAuthorizationClient(conn).Check(ctx, envoyCheck("", nil, nil, nil))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check after drain: %v, want Unavailable", err)
	}
}

func TestDrainForcesAfterGrace(t *testing.T) {
	slow := &slowServer{started: make(chan struct{}), release: make(chan struct{})}
	defer close(slow.release)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, slow)
	lis := bufconn.Listen(1 << 16)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{})
	<-slow.started
	if !Drain(gs, nil, 10*time.Millisecond) {
		t.Error("Drain did not report that it forced the stop")
	}
}

func TestGRPCMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	serverCert := issue(t, ca, caKey, "localhost", filepath.Join(dir, "server"))
	clientCert := issue(t, ca, caKey, "envoy", filepath.Join(dir, "client"))
	_ = serverCert

	s := newTestServer(t, &clock{now: t0}, Policy{})
	gs, _, err := s.NewGRPCServer(GRPCOptions{
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.pem"),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{name: "client certificate accepted", certs: []tls.Certificate{clientCert}, wantOK: true},
		{name: "no client certificate refused", certs: nil, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: tt.certs})
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if (err == nil) != tt.wantOK {
				t.Errorf("health over mTLS: %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestGRPCServerOptionErrors(t *testing.T) {
	s := newTestServer(t, &clock{now: t0}, Policy{})
	tests := []struct {
		name string
		o    GRPCOptions
		want string
	}{
		{name: "key without cert", o: GRPCOptions{KeyFile: "k.pem"}, want: "both a certificate and a key"},
		{name: "missing files", o: GRPCOptions{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}, want: "load TLS key pair"},
		{name: "negative receive limit", o: GRPCOptions{MaxReceiveBytes: -1}, want: "max receive bytes -1 must be positive (server.max_receive_bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.NewGRPCServer(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue writes base.crt and base.key for name, signed by ca.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, base string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, base+".crt", "CERTIFICATE", der)
	writePEM(t, base+".key", "EC PRIVATE KEY", keyDER)
	cert, err := tls.LoadX509KeyPair(base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckDecidedUnderOnePolicy: a Check is decoded and decided under the
// policy in force when it arrived, even if a reload lands in between. The
// interceptor, which runs after decoding and before the decision, swaps
// in a policy that would refuse the request (no trusted header) and then
// one that routes it elsewhere; the Check still sees neither.
func TestCheckDecidedUnderOnePolicy(t *testing.T) {
	var s *Server
	var reloads int
	reload := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		for _, p := range []Policy{
			{Identity: IdentityOptions{Sources: []Source{SourceHeader}}},
			{Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}, Unrouted: UnroutedDeny},
		} {
			if err := s.SetPolicy(p); err != nil {
				t.Error(err)
			}
			reloads++
		}
		return handler(ctx, req)
	}
	s = newTestServer(t, &clock{now: t0}, Policy{Identity: IdentityOptions{Sources: []Source{SourceHeader}, HeaderTrusted: true}})
	conn, _, _ := startGRPC(t, s, GRPCOptions{ServerOptions: []grpc.ServerOption{grpc.UnaryInterceptor(reload)}})
	client := authv3.NewAuthorizationClient(conn)
	req := envoyCheck("hello", map[string]string{"x-user-id": "sam", "content-length": "5"}, nil, nil)
	resp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if reloads != 2 || resp.GetOkResponse() == nil {
		t.Fatalf("after %d reloads mid-Check: response %v; want allowed under the policy the Check arrived with", reloads, resp)
	}
	// The next Check is decided under the last policy: unrouted, refused.
	resp, err = client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 403 || resp.GetStatus().GetMessage() != CodeNoRoute {
		t.Errorf("next Check: status %d %q, want 403 %s", got, resp.GetStatus().GetMessage(), CodeNoRoute)
	}
}
