package main

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// workloadConfig shapes the requests. It must agree with the quota config
// the server is started with (testdata/bench.yaml): the first FreeUsers
// users are freemium there, limited to a few calls per hour, so nearly all
// of the FreeShare of requests sent to them are denied once the warm-up has
// used up their hour, while the others' limits are sized never to bind.
type workloadConfig struct {
	Users     int     // distinct subjects, user-00000 onwards
	FreeUsers int     // the first FreeUsers are the freemium ones
	FreeShare float64 // fraction of requests sent to freemium users
	// MaxBodyBytes is Envoy's with_request_body.max_request_bytes: longer
	// bodies are cut there and flagged partial, as allow_partial_message does.
	MaxBodyBytes int
	Seed         uint64
	// TraceSampled is the fraction of requests whose traceparent has the
	// sampled flag set: the share of requests Envoy traces. A server with
	// parent-based sampling keeps a span for each of them.
	TraceSampled float64
	// Mix is the sort of requests sent: the realistic mix by default, or
	// one of the single-shape workloads of issue 17's table.
	Mix mix
}

// mix is which requests a workload sends.
type mix int

const (
	// mixDefault is the realistic mix: 45 % translate and 35 % summarize
	// with log-normal bodies, 20 % GET without a body.
	mixDefault mix = iota
	// mixGet is only GETs without a body (a plain API call: header
	// identity, no action, no pricing).
	mixGet
	// mixTranslate is only POST /v1/translate with bodies of exactly
	// translateWords words.
	mixTranslate
)

// translateWords is the word count of every body of mixTranslate.
const translateWords = 300

var mixNames = [...]string{mixDefault: "default", mixGet: "get", mixTranslate: "translate"}

// String returns the mix's --mix name.
func (m mix) String() string {
	if m >= 0 && int(m) < len(mixNames) {
		return mixNames[m]
	}
	return "mix(" + strconv.Itoa(int(m)) + ")"
}

// parseMix parses a --mix name.
func parseMix(s string) (mix, error) {
	for i, n := range mixNames {
		if s == n {
			return mix(i), nil
		}
	}
	return 0, fmt.Errorf("loadgen: --mix %q is not a workload; use one of %s", s, strings.Join(mixNames[:], ", "))
}

// Set implements flag.Value.
func (m *mix) Set(s string) error {
	v, err := parseMix(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// kind is one sort of request in the mix.
type kind struct {
	name    string  // action name, or "" for a plain API call
	share   float64 // fraction of all requests
	method  string
	path    string
	ext     map[string]string // the route's context_extensions
	bodies  []string          // realistic bodies, or none
	partial []bool            // whether bodies[i] was cut at MaxBodyBytes
	sizes   []string          // content-length of the full body
}

// workload is the shared, read-only description of the traffic. It is safe
// for concurrent use; each caller builds requests from it with a builder.
type workload struct {
	cfg   workloadConfig
	ids   []string // user ids
	ips   []string // a stable client address per user
	kinds []kind
}

// bodiesPerKind is how many distinct bodies each action draws from.
const bodiesPerKind = 128

// newWorkload validates cfg and prepares the users and bodies. Body word
// counts are log-normal, as translation and summarization traffic is: most
// documents are short, a few are long (translate: median 300 words, 5 to
// 4 000; summarize: median 1 200, 50 to 6 000).
func newWorkload(cfg workloadConfig) (*workload, error) {
	switch {
	case cfg.Users <= 0:
		return nil, fmt.Errorf("loadgen: --users must be > 0, got %d", cfg.Users)
	case cfg.FreeUsers < 0 || cfg.FreeUsers >= cfg.Users:
		return nil, fmt.Errorf("loadgen: --free-users must be in [0, --users), got %d", cfg.FreeUsers)
	case cfg.FreeShare < 0 || cfg.FreeShare > 1 || (cfg.FreeUsers == 0 && cfg.FreeShare > 0):
		return nil, fmt.Errorf("loadgen: --free-share must be in [0, 1] and 0 without free users, got %g", cfg.FreeShare)
	case cfg.TraceSampled < 0 || cfg.TraceSampled > 1:
		return nil, fmt.Errorf("loadgen: --trace-sampled must be in [0, 1], got %g", cfg.TraceSampled)
	case cfg.Mix < 0 || int(cfg.Mix) >= len(mixNames):
		return nil, fmt.Errorf("loadgen: --mix %d is not a workload; use one of %s", cfg.Mix, strings.Join(mixNames[:], ", "))
	}
	w := &workload{cfg: cfg, ids: make([]string, cfg.Users), ips: make([]string, cfg.Users)}
	for i := range cfg.Users {
		w.ids[i] = userID(i)
		w.ips[i] = fmt.Sprintf("10.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c6f616467656e))
	w.kinds = []kind{
		{name: "translate", share: 0.45, method: "POST", path: "/v1/translate"},
		{name: "summarize", share: 0.35, method: "POST", path: "/v1/summarize"},
		{name: "", share: 0.20, method: "GET", path: "/v1/documents/"},
	}
	switch cfg.Mix {
	case mixGet:
		w.kinds = []kind{{name: "", share: 1, method: "GET", path: "/v1/documents/"}}
	case mixTranslate:
		w.kinds = []kind{{name: "translate", share: 1, method: "POST", path: "/v1/translate"}}
	}
	for i := range w.kinds {
		k := &w.kinds[i]
		if k.name == "" {
			k.ext = map[string]string{}
			continue
		}
		k.ext = map[string]string{"action": k.name}
		median, sigma, lo, hi := 300.0, 0.9, 5, 4000
		if k.name == "summarize" {
			median, sigma, lo, hi = 1200, 0.7, 50, 6000
		}
		for range bodiesPerKind {
			words := int(math.Exp(math.Log(median) + sigma*rng.NormFloat64()))
			words = min(max(words, lo), hi)
			if cfg.Mix == mixTranslate {
				words = translateWords
			}
			body := jsonBody(k.name, text(rng, words))
			k.sizes = append(k.sizes, strconv.Itoa(len(body)))
			cut := cfg.MaxBodyBytes > 0 && len(body) > cfg.MaxBodyBytes
			if cut {
				body = body[:cfg.MaxBodyBytes]
			}
			k.bodies = append(k.bodies, body)
			k.partial = append(k.partial, cut)
		}
	}
	return w, nil
}

// userID returns the subject id of user i, as bench.yaml names them.
func userID(i int) string { return fmt.Sprintf("user-%05d", i) }

func jsonBody(action, txt string) string {
	if action == "translate" {
		return `{"source_lang":"en","target_lang":"de","text":"` + txt + `"}`
	}
	return `{"max_sentences":5,"text":"` + txt + `"}`
}

// vocabulary mixes common English with words that need Unicode-aware
// counting (accents, CJK), as real multilingual documents do.
var vocabulary = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
his from at which but have an they you were her she there been one all we their has would when if so no
will can more about said what up its into them than time only could new some these two may first then do
any like my now over such our man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good very make
world still own see men work long get here between both life being under never day same another know
while last might us great old year off come since against go came right used take three document
translation summary report customer contract quarterly revenue policy request service model language
café naïve résumé Straße Übersetzung données équipe 東京 データ 翻訳 요약 số liệu`)

// text returns a pseudo-English text of exactly words words, in sentences.
func text(rng *rand.Rand, words int) string {
	var b strings.Builder
	b.Grow(words * 7)
	sentence := 0
	for i := range words {
		w := vocabulary[rng.IntN(len(vocabulary))]
		if i > 0 {
			b.WriteByte(' ')
		}
		if sentence == 0 && w[0] >= 'a' && w[0] <= 'z' {
			b.WriteByte(w[0] - 'a' + 'A')
			w = w[1:]
		}
		b.WriteString(w)
		sentence++
		if sentence > 6 && rng.IntN(8) == 0 || i == words-1 {
			b.WriteByte('.')
			sentence = 0
		}
	}
	return b.String()
}

// builder makes CheckRequests for one caller. It reuses one request and
// its maps: gRPC marshals a request before Invoke returns, so the next call
// may change it. It is not safe for concurrent use.
type builder struct {
	w       *workload
	rng     *rand.Rand
	req     *authv3.CheckRequest
	http    *authv3.AttributeContext_HttpRequest
	src     *corev3.SocketAddress
	now     *timestamppb.Timestamp
	sub     *structpb.Value_StringValue
	headers map[string]string
	buf     [64]byte
}

// newBuilder returns the builder of caller, whose random sequence is its
// own but fixed by the random seed (workloadConfig.Seed).
func (w *workload) newBuilder(caller int) *builder {
	b := &builder{w: w, rng: rand.New(rand.NewPCG(w.cfg.Seed, uint64(caller)+1))}
	b.headers = map[string]string{
		":authority":        "api.example.com",
		":scheme":           "https",
		"accept":            "application/json",
		"user-agent":        "example-sdk-python/2.4.1",
		"x-forwarded-proto": "https",
		"accept-encoding":   "gzip, deflate",
	}
	b.src = &corev3.SocketAddress{Protocol: corev3.SocketAddress_TCP}
	b.now = &timestamppb.Timestamp{}
	b.sub = &structpb.Value_StringValue{}
	b.http = &authv3.AttributeContext_HttpRequest{
		Headers: b.headers, Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2",
	}
	b.req = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: b.src}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Protocol: corev3.SocketAddress_TCP, Address: "10.0.0.5",
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8443}}}}},
		Request:         &authv3.AttributeContext_Request{Time: b.now, Http: b.http},
		MetadataContext: jwtMetadata(b.sub),
	}}
	return b
}

// jwtMetadata is what Envoy's jwt_authn filter (payload_in_metadata:
// jwt_payload) leaves in the metadata context; sub is updated per request.
func jwtMetadata(sub *structpb.Value_StringValue) *corev3.Metadata {
	str := structpb.NewStringValue
	payload := &structpb.Struct{Fields: map[string]*structpb.Value{
		"sub":   {Kind: sub},
		"iss":   str("https://auth.example.com/"),
		"aud":   str("api.example.com"),
		"scope": str("translate summarize documents:read"),
		"iat":   structpb.NewNumberValue(1.7e9),
		"exp":   structpb.NewNumberValue(1.7e9 + 3600),
	}}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.filters.http.jwt_authn": {Fields: map[string]*structpb.Value{
			"jwt_payload": structpb.NewStructValue(payload)}},
	}}
}

// next fills in the caller's request for a fresh random request and returns
// it, valid until the next call.
func (b *builder) next(now time.Time) *authv3.CheckRequest {
	w, rng := b.w, b.rng
	var u int
	if rng.Float64() < w.cfg.FreeShare {
		u = rng.IntN(w.cfg.FreeUsers)
	} else {
		u = w.cfg.FreeUsers + rng.IntN(w.cfg.Users-w.cfg.FreeUsers)
	}
	return b.forUser(u, now)
}

// forUser fills in the caller's request for a random request of user u
// and returns it, valid until the next call.
func (b *builder) forUser(u int, now time.Time) *authv3.CheckRequest {
	w, rng := b.w, b.rng
	k := w.pickKind(rng.Float64())

	b.src.Address = w.ips[u]
	b.src.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(32768 + rng.IntN(28000))}
	b.now.Seconds, b.now.Nanos = now.Unix(), int32(now.Nanosecond())
	b.sub.StringValue = w.ids[u]
	b.req.Attributes.ContextExtensions = k.ext

	h := b.headers
	id := b.hex(16)
	reqID := id[0:8] + "-" + id[8:12] + "-4" + id[13:16] + "-a" + id[17:20] + "-" + id[20:32]
	h["x-request-id"] = reqID
	flags := "-00"
	if w.cfg.TraceSampled >= 1 || (w.cfg.TraceSampled > 0 && rng.Float64() < w.cfg.TraceSampled) {
		flags = "-01"
	}
	h["traceparent"] = "00-" + id + "-" + b.hex(8) + flags
	h["x-user-id"] = w.ids[u]
	h["x-forwarded-for"] = w.ips[u]
	h["x-envoy-external-address"] = w.ips[u]
	h[":method"] = k.method
	b.http.Id, b.http.Method = reqID, k.method
	if len(k.bodies) == 0 {
		path := k.path + strconv.Itoa(rng.IntN(1_000_000))
		h[":path"], b.http.Path = path, path
		delete(h, "content-type")
		delete(h, "content-length")
		delete(h, "x-envoy-auth-partial-body")
		b.http.Body, b.http.Size = "", 0
		return b.req
	}
	i := rng.IntN(len(k.bodies))
	h[":path"], b.http.Path = k.path, k.path
	h["content-type"] = "application/json"
	h["content-length"] = k.sizes[i]
	if k.partial[i] {
		h["x-envoy-auth-partial-body"] = "true"
	} else {
		delete(h, "x-envoy-auth-partial-body")
	}
	b.http.Body, b.http.Size = k.bodies[i], int64(len(k.bodies[i]))
	return b.req
}

func (w *workload) pickKind(p float64) *kind {
	for i := range w.kinds {
		p -= w.kinds[i].share
		if p < 0 {
			return &w.kinds[i]
		}
	}
	return &w.kinds[len(w.kinds)-1]
}

// hex returns n random bytes in lower-case hex.
func (b *builder) hex(n int) string {
	var raw [32]byte
	for i := 0; i < n; i += 8 {
		v := b.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	hex.Encode(b.buf[:2*n], raw[:n])
	return string(b.buf[:2*n])
}
