package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const checkHelp = `Usage: quotagate check [flags]

Sends one Check to a running quotagate, shaped as Envoy's ext_authz filter
sends it (full AttributeContext, body, context_extensions, jwt_authn
metadata), and prints the decision. A Check is real: an allowed one is
charged.

Exit codes: 0 allowed, 1 denied, 2 error (bad flags, server unreachable).

Examples:
  quotagate check --user demo-free --path /v1/translate --action translate --body 'Hello world'
  quotagate check --user demo-standard --action summarize --body-file article.txt --json
  quotagate check --header x-api-key=demo-standard-key --path /v1/translate
  quotagate check --jwt-claims '{"sub":"alice","tier":"enterprise"}' --path /v1/summarize
`

type headerFlag []string

func (h *headerFlag) String() string { return strings.Join(*h, ",") }
func (h *headerFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("want name=value, got %q", v)
	}
	*h = append(*h, v)
	return nil
}

// checkFlags are check's settings.
type checkFlags struct {
	addr, user, userHeader, path, method, host, action, workflow string
	body, bodyFile, jwtClaims, jwtFilter, jwtKey, principal      string
	caFile, certFile, keyFile                                    string
	headers                                                      headerFlag
	timeout                                                      time.Duration
	asJSON                                                       bool
}

func parseCheckFlags(args []string, getenv func(string) string, stdout io.Writer) (checkFlags, error) {
	var f checkFlags
	fs := newFlagSet("check")
	fs.StringVar(&f.addr, "addr", "localhost:9191", "`address` of quotagate's gRPC listener")
	fs.StringVar(&f.user, "user", "", "caller `id`, sent in the --user-header header (the default config trusts x-user-id)")
	fs.StringVar(&f.userHeader, "user-header", "x-user-id", "`header` that carries --user")
	fs.StringVar(&f.path, "path", "/", "request `path`, with an optional query")
	fs.StringVar(&f.method, "method", "", "HTTP `method`; empty means POST with a body, else GET")
	fs.StringVar(&f.host, "host", "api.example.com", "the :authority of the request")
	fs.StringVar(&f.action, "action", "", "context_extensions action, as an Envoy route would set it")
	fs.StringVar(&f.workflow, "workflow", "", "context_extensions workflow")
	fs.StringVar(&f.body, "body", "", "request body `text`")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the request body from `file` (- for stdin)")
	fs.Var(&f.headers, "header", "request header `name=value`; repeatable")
	fs.StringVar(&f.jwtClaims, "jwt-claims", "", "verified JWT payload as a JSON `object`, sent as jwt_authn metadata")
	fs.StringVar(&f.jwtFilter, "jwt-filter", "envoy.filters.http.jwt_authn", "metadata `namespace` of the JWT payload")
	fs.StringVar(&f.jwtKey, "jwt-payload-key", "jwt_payload", "metadata `key` of the JWT payload")
	fs.StringVar(&f.principal, "principal", "", "mTLS peer `principal` (SPIFFE id), as Envoy reports it")
	fs.StringVar(&f.caFile, "ca-file", "", "connect with TLS, verifying the server against the CAs in `file`")
	fs.StringVar(&f.certFile, "cert-file", "", "client certificate `file` for mTLS")
	fs.StringVar(&f.keyFile, "key-file", "", "client key `file` for mTLS")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "give up after this `duration`")
	fs.BoolVar(&f.asJSON, "json", false, "print the decision as JSON")
	if _, err := parseFlags(fs, args, getenv, checkHelp, stdout); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, exitError{code: 2, err: fmt.Errorf("check: unexpected argument %q (see quotagate check --help)", fs.Arg(0))}
	}
	return f, nil
}

func runCheck(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f, err := parseCheckFlags(args, getenv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	req, err := f.request(stdin)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	resp, err := f.send(ctx, req)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	out := describe(resp)
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return exitError{code: 2, err: err}
		}
	} else {
		out.print(stdout)
	}
	if !out.Allowed {
		return exitError{code: 1}
	}
	return nil
}

// request builds the CheckRequest as Envoy would send it.
func (f checkFlags) request(stdin io.Reader) (*authv3.CheckRequest, error) {
	body, err := f.readBody(stdin)
	if err != nil {
		return nil, err
	}
	method := f.method
	if method == "" {
		method = "GET"
		if body != "" {
			method = "POST"
		}
	}
	reqID := randomHex(16)
	h := map[string]string{
		":authority": f.host, ":method": method, ":path": f.path, ":scheme": "https",
		"user-agent": "quotagate-check/" + versionString(), "x-request-id": reqID,
		"x-forwarded-proto": "https", "traceparent": "00-" + randomHex(16) + "-" + randomHex(8) + "-01",
	}
	if body != "" {
		h["content-length"] = strconv.Itoa(len(body))
	}
	if f.user != "" {
		h[strings.ToLower(f.userHeader)] = f.user
	}
	for _, kv := range f.headers {
		k, v, _ := strings.Cut(kv, "=")
		h[strings.ToLower(k)] = v
	}
	attrs := &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("127.0.0.1", 50000), Principal: f.principal},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("127.0.0.1", 443)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: reqID, Method: method, Headers: h, Path: f.path, Host: f.host, Scheme: "https",
				Size: int64(len(body)), Protocol: "HTTP/1.1", Body: body,
			},
		},
	}
	if f.action != "" || f.workflow != "" {
		attrs.ContextExtensions = map[string]string{}
		if f.action != "" {
			attrs.ContextExtensions["action"] = f.action
		}
		if f.workflow != "" {
			attrs.ContextExtensions["workflow"] = f.workflow
		}
	}
	if f.jwtClaims != "" {
		if attrs.MetadataContext, err = f.jwtMetadata(); err != nil {
			return nil, err
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}, nil
}

// readBody returns --body, or the contents of --body-file (- is stdin).
func (f checkFlags) readBody(stdin io.Reader) (string, error) {
	if f.bodyFile == "" {
		return f.body, nil
	}
	var b []byte
	var err error
	if f.bodyFile == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(f.bodyFile)
	}
	if err != nil {
		return "", fmt.Errorf("check: --body-file: %w", err)
	}
	return string(b), nil
}

// jwtMetadata is --jwt-claims as jwt_authn's payload_in_metadata leaves it.
func (f checkFlags) jwtMetadata() (*corev3.Metadata, error) {
	var claims map[string]any
	if err := json.Unmarshal([]byte(f.jwtClaims), &claims); err != nil {
		return nil, fmt.Errorf("check: --jwt-claims must be a JSON object: %w", err)
	}
	payload, err := structpb.NewStruct(claims)
	if err != nil {
		return nil, fmt.Errorf("check: --jwt-claims: %w", err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		f.jwtFilter: {Fields: map[string]*structpb.Value{f.jwtKey: structpb.NewStructValue(payload)}},
	}}, nil
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// send dials the server and makes the Check.
func (f checkFlags) send(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	creds := insecure.NewCredentials()
	if f.caFile != "" || f.certFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return nil, fmt.Errorf("check: --ca-file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("check: --ca-file %s holds no PEM certificate", f.caFile)
			}
		}
		if f.certFile != "" {
			cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
			if err != nil {
				return nil, fmt.Errorf("check: --cert-file/--key-file: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("check: %s: %w", f.addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("check: %s: %w (is quotagate serve running there?)", f.addr, err)
	}
	return resp, nil
}

// checkResult is a CheckResponse in readable form; it is also --json's
// output.
type checkResult struct {
	Allowed         bool              `json:"allowed"`
	HTTPStatus      int               `json:"http_status"`
	GRPCCode        string            `json:"grpc_code"`
	Headers         map[string]string `json:"headers"`
	UpstreamHeaders map[string]string `json:"upstream_headers,omitempty"`
	HeadersToRemove []string          `json:"headers_to_remove,omitempty"`
	Body            json.RawMessage   `json:"body,omitempty"`
	DynamicMetadata map[string]any    `json:"dynamic_metadata,omitempty"`
}

func describe(resp *authv3.CheckResponse) checkResult {
	r := checkResult{
		GRPCCode:        codes.Code(resp.GetStatus().GetCode()).String(),
		DynamicMetadata: resp.GetDynamicMetadata().AsMap(),
	}
	if ok := resp.GetOkResponse(); ok != nil || resp.GetStatus().GetCode() == 0 {
		r.Allowed, r.HTTPStatus = true, 200
		r.Headers = headerValues(ok.GetResponseHeadersToAdd())
		r.UpstreamHeaders = headerValues(ok.GetHeaders())
		r.HeadersToRemove = ok.GetHeadersToRemove()
		return r
	}
	d := resp.GetDeniedResponse()
	r.HTTPStatus = int(d.GetStatus().GetCode())
	if r.HTTPStatus == 0 {
		r.HTTPStatus = 403 // Envoy's default for a denial without a status
	}
	r.Headers = headerValues(d.GetHeaders())
	if body := d.GetBody(); body != "" {
		if json.Valid([]byte(body)) {
			r.Body = json.RawMessage(body)
		} else {
			r.Body, _ = json.Marshal(body)
		}
	}
	return r
}

func headerValues(opts []*corev3.HeaderValueOption) map[string]string {
	m := make(map[string]string, len(opts))
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

func (r checkResult) print(w io.Writer) {
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	md := r.DynamicMetadata
	fmt.Fprintf(w, "%s  %d %s  (gRPC %s)\n", verdict, r.HTTPStatus, http.StatusText(r.HTTPStatus), r.GRPCCode)
	fmt.Fprintf(w, "  decision  %v\n  reason    %v\n", md["decision_id"], md["reason"])
	for _, k := range []string{"tier", "action", "workflow", "cost", "failure_mode"} {
		if v, ok := md[k]; ok && v != "" {
			fmt.Fprintf(w, "  %-9s %v\n", k, v)
		}
	}
	printHeaders(w, "headers to the client", r.Headers)
	printHeaders(w, "headers to the upstream", r.UpstreamHeaders)
	if len(r.HeadersToRemove) > 0 {
		fmt.Fprintf(w, "removed from the upstream request: %s\n", strings.Join(r.HeadersToRemove, ", "))
	}
	if len(r.Body) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, r.Body, "  ", "  ") != nil {
			pretty.Write(r.Body)
		}
		fmt.Fprintf(w, "body:\n  %s\n", pretty.Bytes())
	}
}

func printHeaders(w io.Writer, title string, h map[string]string) {
	if len(h) == 0 {
		return
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "%s:\n", title)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, h[k])
	}
}
