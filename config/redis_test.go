package config

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestRedisTargets(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name string
		in   string
		want func(r RedisStoreConfig) bool
	}{
		{name: "one server", in: "store: {kind: redis, redis: {addr: \"10.0.0.1:6379\"}}",
			want: func(r RedisStoreConfig) bool { return r.Addr == "10.0.0.1:6379" }},
		{name: "cluster", in: "store: {kind: redis, redis: {cluster: {addrs: [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]}, timeout: 20ms, prefix: q, wait_replicas: 1}}",
			want: func(r RedisStoreConfig) bool {
				return slices.Equal(r.Cluster.Addrs, []string{"10.0.0.1:7000", "10.0.0.2:7000"}) && r.Timeout.D().String() == "20ms" && r.Prefix == "q" && r.WaitReplicas == 1
			}},
		{name: "sentinel", in: "store: {kind: redis, redis: {sentinel: {master: mymaster, addrs: [\"10.0.0.1:26379\"], password: s}, password: p}}",
			want: func(r RedisStoreConfig) bool {
				return r.Sentinel.Master == "mymaster" && r.Sentinel.Addrs[0] == "10.0.0.1:26379" && r.Sentinel.Password == "s" && r.Password == "p"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tiers + tt.in + "\n"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.want(f.Store.Redis) {
				t.Errorf("store.redis = %+v", f.Store.Redis)
			}
		})
	}
}

func TestRedisTargetMixUps(t *testing.T) {
	const tiers = "quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: 10, priority: low}\n"
	tests := []struct {
		name string
		in   string
		want []string // substrings, one per problem, in order
	}{
		{name: "several addresses as addr", in: `{addr: "10.0.0.1:7000,10.0.0.2:7000"}`,
			want: []string{`store.redis.addr: holds several addresses ("10.0.0.1:7000,10.0.0.2:7000")`}},
		{name: "space separated addresses", in: `{addr: "10.0.0.1:7000 10.0.0.2:7000"}`,
			want: []string{"store.redis.cluster.addrs"}},
		{name: "addr beside cluster", in: `{addr: "10.0.0.1:7000", cluster: {addrs: ["10.0.0.2:7000"]}}`,
			want: []string{`store.redis.addr: set to "10.0.0.1:7000" beside store.redis.cluster; remove addr`}},
		{name: "addr beside sentinel", in: `{addr: "10.0.0.1:6379", sentinel: {master: m, addrs: ["10.0.0.2:26379"]}}`,
			want: []string{"beside store.redis.sentinel"}},
		{name: "cluster and sentinel", in: `{cluster: {addrs: ["a:1"]}, sentinel: {master: m, addrs: ["b:2"]}}`,
			want: []string{"store.redis: cluster and sentinel are both set"}},
		{name: "nothing", in: `{}`, want: []string{"store.redis.addr: missing"}},
		{name: "bad cluster addr", in: `{cluster: {addrs: ["10.0.0.1:7000", "nohost"]}}`,
			want: []string{`store.redis.cluster.addrs[1]: want host:port`}},
		{name: "cluster with a database", in: `{cluster: {addrs: ["10.0.0.1:7000"]}, db: 2}`,
			want: []string{"store.redis.db: must be 0 with store.redis.cluster"}},
		{name: "sentinel without master", in: `{sentinel: {addrs: ["10.0.0.1:26379"]}}`,
			want: []string{"store.redis.sentinel.master: missing"}},
		{name: "sentinel without addrs", in: `{sentinel: {master: m}}`,
			want: []string{"store.redis.sentinel.addrs: missing"}},
		{name: "negative wait_replicas", in: `{addr: "10.0.0.1:6379", wait_replicas: -1}`,
			want: []string{"store.redis.wait_replicas: must be >= 0"}},
		{name: "bad sentinel addr", in: `{sentinel: {master: m, addrs: ["x:99999"]}}`,
			want: []string{`store.redis.sentinel.addrs[0]: want host:port`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tiers + "store: {kind: redis, redis: " + tt.in + "}\n"))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse() = %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("problems = %q, want %d", ve.Problems, len(tt.want))
			}
			for i, p := range ve.Problems {
				if !strings.Contains(p.Error(), tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, p.Error(), tt.want[i])
				}
			}
		})
	}
}

// FuzzRedisTarget feeds hostile addresses to store.redis's addr, cluster
// and sentinel: Parse never panics, and a configuration it accepts names
// exactly one way to reach Redis, with every address a host:port.
func FuzzRedisTarget(f *testing.F) {
	f.Add("10.0.0.1:6379", "", "", "")
	f.Add("10.0.0.1:7000,10.0.0.2:7000", "", "", "")
	f.Add("", "10.0.0.1:7000", "", "")
	f.Add("", "", "mymaster", "10.0.0.1:26379")
	f.Add("x:1", "y:2", "m", "z:3")
	f.Add("", ":0", "", "")
	f.Add("[::1]:6379", "", "", "")
	f.Fuzz(func(t *testing.T, addr, cluster, master, sentinel string) {
		r := map[string]any{"addr": addr}
		if cluster != "" {
			r["cluster"] = map[string]any{"addrs": strings.Split(cluster, ";")}
		}
		if master != "" || sentinel != "" {
			r["sentinel"] = map[string]any{"master": master, "addrs": strings.Split(sentinel, ";")}
		}
		doc := map[string]any{
			"quota_manager": map[string]any{"tiers": map[string]any{"freemium": map[string]any{"api_calls_per_hour": 10, "priority": "low"}}},
			"store":         map[string]any{"kind": "redis", "redis": r},
		}
		in, err := json.Marshal(doc) // strings and maps of strings always marshal
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(in)
		if err != nil {
			return
		}
		got := cfg.Store.Redis
		set := 0
		for _, ok := range []bool{got.Addr != "", len(got.Cluster.Addrs) > 0, got.Sentinel.Master != "" || len(got.Sentinel.Addrs) > 0} {
			if ok {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("accepted %s with %d ways to reach Redis, want 1", in, set)
		}
		for _, a := range append(append([]string{got.Addr}, got.Cluster.Addrs...), got.Sentinel.Addrs...) {
			if a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Fatalf("accepted address %q: %v", a, err)
			}
		}
		if len(got.Sentinel.Addrs) > 0 && got.Sentinel.Master == "" {
			t.Fatalf("accepted sentinel addresses without a master: %s", in)
		}
	})
}
