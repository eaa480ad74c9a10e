package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRequestsAreShapedAsEnvoySendsThem(t *testing.T) {
	w, err := newWorkload(workloadConfig{Users: 10000, FreeUsers: 20, FreeShare: 0.05, MaxBodyBytes: 65536, Seed: 1, TraceSampled: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	b := w.newBuilder(0)
	ids := map[string]bool{}
	actions := map[string]int{}
	free, sampled := 0, 0
	const n = 20000
	for range n {
		req := b.next(time.Unix(1_700_000_000, 0))
		a := req.GetAttributes()
		h := a.GetRequest().GetHttp()
		for _, k := range []string{":authority", ":method", ":path", "x-request-id", "traceparent", "x-user-id"} {
			if h.GetHeaders()[k] == "" {
				t.Fatalf("header %q missing from %v", k, h.GetHeaders())
			}
		}
		if a.GetSource().GetAddress().GetSocketAddress().GetAddress() == "" || a.GetDestination().GetAddress() == nil {
			t.Fatal("source or destination address missing")
		}
		if strings.HasSuffix(h.GetHeaders()["traceparent"], "-01") {
			sampled++
		}
		user := h.GetHeaders()["x-user-id"]
		sub := a.GetMetadataContext().GetFilterMetadata()["envoy.filters.http.jwt_authn"].GetFields()["jwt_payload"].GetStructValue().GetFields()["sub"].GetStringValue()
		if sub != user {
			t.Fatalf("jwt_authn sub %q differs from x-user-id %q", sub, user)
		}
		if i, _ := strconv.Atoi(strings.TrimPrefix(user, "user-")); i < 20 {
			free++
		}
		ids[h.GetId()] = true
		action := a.GetContextExtensions()["action"]
		actions[action]++
		if action != "" {
			if h.GetBody() == "" || h.GetHeaders()["content-length"] != strconv.Itoa(len(h.GetBody())) || h.GetSize() != int64(len(h.GetBody())) {
				t.Fatalf("%s: body of %d bytes with content-length %q and size %d", action, len(h.GetBody()), h.GetHeaders()["content-length"], h.GetSize())
			}
		} else if h.GetBody() != "" || h.GetHeaders()["content-length"] != "" || h.GetMethod() != "GET" {
			t.Fatalf("plain call: method %s, body %d bytes, content-length %q", h.GetMethod(), len(h.GetBody()), h.GetHeaders()["content-length"])
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct request ids in %d requests", len(ids), n)
	}
	if share := float64(sampled) / n; math.Abs(share-0.1) > 0.01 {
		t.Errorf("share of traceparents flagged sampled = %.3f, want 0.1", share)
	}
	if share := float64(free) / n; math.Abs(share-0.05) > 0.01 {
		t.Errorf("share of requests to freemium users = %.3f, want 0.05", share)
	}
	for action, want := range map[string]float64{"translate": 0.45, "summarize": 0.35, "": 0.20} {
		if got := float64(actions[action]) / n; math.Abs(got-want) > 0.02 {
			t.Errorf("share of action %q = %.3f, want %.2f", action, got, want)
		}
	}
}

func TestBodyWordCounts(t *testing.T) {
	w, err := newWorkload(workloadConfig{Users: 100, Seed: 7, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range w.kinds {
		if k.name == "" {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			var words []int
			partial := 0
			for i, body := range k.bodies {
				if k.partial[i] {
					partial++
					if len(body) != 4096 {
						t.Errorf("partial body of %d bytes, want cut at 4096", len(body))
					}
					continue
				}
				words = append(words, len(strings.Fields(body)))
			}
			if partial == 0 {
				t.Error("no body exceeded 4096 bytes; want some cut and flagged partial")
			}
			for _, n := range words {
				if n < 5 || n > 6010 {
					t.Errorf("body of %d words, outside the configured range", n)
				}
			}
		})
	}
}

func TestNewWorkloadRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  workloadConfig
	}{
		{name: "no users", cfg: workloadConfig{}},
		{name: "all users free", cfg: workloadConfig{Users: 10, FreeUsers: 10}},
		{name: "share above 1", cfg: workloadConfig{Users: 10, FreeUsers: 1, FreeShare: 1.5}},
		{name: "share without free users", cfg: workloadConfig{Users: 10, FreeShare: 0.1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newWorkload(tt.cfg); err == nil || !strings.HasPrefix(err.Error(), "loadgen: ") {
				t.Errorf("newWorkload(%+v) error = %v, want a loadgen: error", tt.cfg, err)
			}
		})
	}
}

func BenchmarkNext(b *testing.B) {
	w, err := newWorkload(workloadConfig{Users: 10000, FreeUsers: 50, FreeShare: 0.05, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	bl := w.newBuilder(0)
	now := time.Now()
	b.ReportAllocs()
	for range b.N {
		bl.next(now)
	}
}

func TestMixShapesEveryRequest(t *testing.T) {
	tests := []struct {
		name        string
		mix         string
		wantMethod  string
		wantAction  string
		wantHeaders int
		wantWords   int // words in every body; 0: no body
	}{
		{name: "GET without a body", mix: "get", wantMethod: "GET", wantAction: "", wantHeaders: 13},
		{name: "translate with 300 words", mix: "translate", wantMethod: "POST", wantAction: "translate", wantHeaders: 15, wantWords: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMix(tt.mix)
			if err != nil {
				t.Fatal(err)
			}
			if m.String() != tt.mix {
				t.Errorf("parseMix(%q).String() = %q", tt.mix, m)
			}
			w, err := newWorkload(workloadConfig{Users: 1000, FreeUsers: 10, FreeShare: 0.05, MaxBodyBytes: 65536, Seed: 3, TraceSampled: 0.01, Mix: m})
			if err != nil {
				t.Fatal(err)
			}
			b := w.newBuilder(0)
			for range 2000 {
				h := b.next(time.Unix(1_700_000_000, 0)).GetAttributes().GetRequest().GetHttp()
				action := b.req.GetAttributes().GetContextExtensions()["action"]
				if h.GetMethod() != tt.wantMethod || action != tt.wantAction || len(h.GetHeaders()) != tt.wantHeaders {
					t.Fatalf("%s %s action %q with %d headers %v; want %s, action %q, %d headers",
						h.GetMethod(), h.GetPath(), action, len(h.GetHeaders()), h.GetHeaders(), tt.wantMethod, tt.wantAction, tt.wantHeaders)
				}
				if got := len(strings.Fields(h.GetBody())); got != tt.wantWords {
					t.Fatalf("body of %d words, want %d: %.80q", got, tt.wantWords, h.GetBody())
				}
			}
		})
	}
}

func TestParseMixRejectsUnknownNames(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{name: "empty", in: ""},
		{name: "unknown", in: "summarize"},
		{name: "wrong case", in: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseMix(tt.in); err == nil || !strings.Contains(err.Error(), "use one of default, get, translate") {
				t.Errorf("parseMix(%q) error = %v, want one listing the workloads", tt.in, err)
			}
		})
	}
	if _, err := newWorkload(workloadConfig{Users: 10, Mix: mix(9)}); err == nil {
		t.Error("newWorkload accepted mix 9")
	}
}
