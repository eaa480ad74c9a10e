package deploy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/yaml"
)

// prometheusOwn are series Prometheus makes itself when it scrapes, not
// metrics quotagate exports.
var prometheusOwn = []string{"up"}

// grafanaVars stand in for the dashboard's Grafana variables so that its
// queries parse as PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$job", "quotagate")

// metricNames parses a PromQL expression and returns the metric names it
// selects.
func metricNames(t *testing.T, p parser.Parser, where, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %q does not parse: %v", where, expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: selector %s has no metric name", where, vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// TestSREKit parses the alert rules with Prometheus's rulefmt and the
// rules' and the dashboard's queries with the PromQL parser, then checks
// that every metric they name is exported by a running server (with a
// Redis store, a ledger and a watched configuration, so that every metric
// family exists) and that the rules cover what an SRE must be woken for.
func TestSREKit(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("prometheus/quotagate-rules.yaml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errs)
	}
	used := map[string][]string{} // metric -> where
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", r.Alert)
			}
			for _, n := range metricNames(t, p, "alert "+r.Alert, r.Expr) {
				used[n] = append(used[n], "alert "+r.Alert)
			}
		}
	}
	for _, want := range []string{"QuotagateDown", "QuotagateCheckErrors", "QuotagateShedding", "QuotagateConfigReloadFailed", "QuotagateLedgerLag", "QuotagateRedisDegraded"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert", want)
		}
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("grafana/quotagate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			for _, n := range metricNames(t, p, "panel "+panel.Title, grafanaVars.Replace(tg.Expr)) {
				used[n] = append(used[n], "panel "+panel.Title)
			}
		}
	}

	fams := scrapeFullServer(t)
	for name, where := range used {
		if slices.Contains(prometheusOwn, name) {
			continue
		}
		if !exported(fams, name) {
			t.Errorf("%s (used by %s) is not exported by quotagate's /metrics", name, strings.Join(where, ", "))
		}
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[want] == nil {
			t.Errorf("/metrics has no %s", want)
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetName(), "otel_scope_") {
					t.Fatalf("%s carries %s", name, l.GetName())
				}
			}
		}
	}
}

// exported reports whether name is a metric family of fams, or a
// histogram's _bucket, _sum or _count series.
func exported(fams map[string]*dto.MetricFamily, name string) bool {
	if fams[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

// scrapeFullServer runs the server with the Kubernetes base configuration
// on a real redis-server, with a ledger, makes priced Checks and returns
// its /metrics.
func scrapeFullServer(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: run `bash .ci/deps/redis.sh` (make test-deps runs it)")
	}
	redisAddr := freeAddr(t)
	_, port, _ := net.SplitHostPort(redisAddr)
	redis := exec.Command(redisBin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Process.Kill(); redis.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", redisAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}

	data, err := os.ReadFile("kubernetes/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["store"].(map[string]any)["kind"] = "redis"
	doc["store"].(map[string]any)["redis"] = map[string]any{"addr": redisAddr}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, out, 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := startServer(t, cfg, "--ledger", filepath.Join(dir, "ledger.db"))

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := strings.Repeat("words to translate ", 50)
	for _, user := range []string{"ann", "bob"} {
		_, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/v1/translate", Host: "api", Body: body,
				Headers: map[string]string{"x-quotagate-subject": user, "content-length": "950"},
			}},
		}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	// Observable metrics are read at scrape time; the ledger writes in
	// batches: scrape until the ledger and the store have reported.
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = tp.TextToMetricFamilies(strings.NewReader(string(text)))
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		if (fams["quota_store_up"] != nil && fams["quota_ledger_records_total"] != nil) || time.Now().After(deadline) {
			return fams
		}
	}
}
