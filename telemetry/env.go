package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal forms.
const (
	protoGRPC = "grpc"
	protoHTTP = "http/protobuf"
)

// otlpTarget is where and how one signal is exported, as read from the
// environment. A zero endpoint means "do not export this signal".
type otlpTarget struct {
	endpoint string // full URL: for HTTP the path included
	protocol string
	// protocolVar is the variable protocol came from; "" for the default.
	protocolVar string
	headers     map[string]string
}

// signalTarget reads the OTLP target of one signal ("TRACES" or "METRICS")
// from getenv, following the OpenTelemetry specification: the per-signal
// variable wins; the generic endpoint gets "/v1/<signal>" appended for HTTP.
func signalTarget(getenv func(string) string, signal string) (otlpTarget, error) {
	var t otlpTarget
	t.protocol = protoHTTP
	for _, name := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(name); v != "" {
			t.protocol, t.protocolVar = v, name
			break
		}
	}
	if t.protocol != protoGRPC && t.protocol != protoHTTP {
		return t, fmt.Errorf("telemetry: %s %q is not supported: want grpc or http/protobuf", t.protocolVar, t.protocol)
	}
	if e := getenv("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"); e != "" {
		t.endpoint = e
	} else if e := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); e != "" {
		t.endpoint = e
		if t.protocol == protoHTTP {
			t.endpoint = strings.TrimSuffix(e, "/") + "/v1/" + strings.ToLower(signal)
		}
	}
	if t.endpoint != "" {
		if _, err := url.Parse(t.endpoint); err != nil {
			return t, fmt.Errorf("telemetry: OTLP %s endpoint %q: %w", strings.ToLower(signal), t.endpoint, err)
		}
	}
	h, err := parseKeyValues(getenv("OTEL_EXPORTER_OTLP_HEADERS"))
	if err != nil {
		return t, fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_HEADERS: %w", err)
	}
	hs, err := parseKeyValues(getenv("OTEL_EXPORTER_OTLP_" + signal + "_HEADERS"))
	if err != nil {
		return t, fmt.Errorf("telemetry: OTEL_EXPORTER_OTLP_%s_HEADERS: %w", signal, err)
	}
	for k, v := range hs {
		h[k] = v
	}
	t.headers = h
	return t, nil
}

// parseKeyValues parses the W3C-baggage-like "k1=v1,k2=v2" form used by
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES; values are
// percent-decoded.
func parseKeyValues(s string) (map[string]string, error) {
	out := make(map[string]string)
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
		out[k] = dv
	}
	return out, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// newTraceExporter builds the OTLP span exporter for t. Explicit options
// override anything the exporter package would read from the process
// environment itself.
func newTraceExporter(ctx context.Context, t otlpTarget) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if t.protocol == protoGRPC {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(t.endpoint), otlptracegrpc.WithHeaders(t.headers))
	} else {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(t.endpoint), otlptracehttp.WithHeaders(t.headers))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP trace exporter for %s: %w", t.endpoint, err)
	}
	return exp, nil
}

// newMetricExporter builds the OTLP metric exporter for t.
func newMetricExporter(ctx context.Context, t otlpTarget) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	if t.protocol == protoGRPC {
		exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(t.endpoint), otlpmetricgrpc.WithHeaders(t.headers))
	} else {
		exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(t.endpoint), otlpmetrichttp.WithHeaders(t.headers))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP metric exporter for %s: %w", t.endpoint, err)
	}
	return exp, nil
}

// defaultExportBatchSpans is how many spans one trace export carries at
// most, unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise. The SDK's
// 512 made an export that converted and marshaled every span in one go: a
// server sending a span for each of 360 Checks a second (its denials and
// 1 % of the rest) held its one processor for 7 ms every 1.4 s, and no
// Check was read meanwhile. 64 spans take under a millisecond, and the
// export then waits on the network, where Checks get their turn. It costs
// one more gRPC call per 64 spans, which is little beside the spans' own
// conversion (about 14 µs each).
const defaultExportBatchSpans = 64

// exportBatchSpans reads OTEL_BSP_MAX_EXPORT_BATCH_SIZE (spans per trace
// export), defaultExportBatchSpans when unset.
func exportBatchSpans(getenv func(string) string) (int, error) {
	s := strings.TrimSpace(getenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"))
	if s == "" {
		return defaultExportBatchSpans, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("telemetry: OTEL_BSP_MAX_EXPORT_BATCH_SIZE %q: want a whole number of spans above 0 (default %d)", s, defaultExportBatchSpans)
	}
	return n, nil
}

// exportInterval reads OTEL_METRIC_EXPORT_INTERVAL (milliseconds); zero
// means the SDK default (60 s).
func exportInterval(getenv func(string) string) (time.Duration, error) {
	s := getenv("OTEL_METRIC_EXPORT_INTERVAL")
	if s == "" {
		return 0, nil
	}
	ms, err := strconv.Atoi(s)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("telemetry: OTEL_METRIC_EXPORT_INTERVAL %q: want a positive number of milliseconds", s)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// newResource builds the resource from the service name and version and
// from OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which win in that
// order.
func newResource(opts Options) (*resource.Resource, error) {
	attrs, err := parseKeyValues(opts.Getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	all := map[string]string{
		"service.name":           firstNonEmpty(opts.ServiceName, "quotagate"),
		"telemetry.sdk.language": "go",
		"telemetry.sdk.name":     "opentelemetry",
	}
	if opts.Version != "" {
		all["service.version"] = opts.Version
	}
	for k, v := range attrs {
		all[k] = v
	}
	if n := opts.Getenv("OTEL_SERVICE_NAME"); n != "" {
		all["service.name"] = n
	}
	kvs := make([]attribute.KeyValue, 0, len(all))
	for k, v := range all {
		kvs = append(kvs, attribute.String(k, v))
	}
	return resource.NewSchemaless(kvs...), nil
}

// exporterEnabled reports whether OTEL_TRACES_EXPORTER or
// OTEL_METRICS_EXPORTER (the given variable) allows OTLP export: empty or
// "otlp" does, "none" does not.
func exporterEnabled(getenv func(string) string, name string) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv(name))); v {
	case "", "otlp":
		return true, nil
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("telemetry: %s %q is not supported: want otlp or none (use --trace-stdout for console output)", name, v)
	}
}
