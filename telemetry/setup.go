package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configures Setup.
type Options struct {
	// ServiceName is the service.name resource attribute; OTEL_SERVICE_NAME
	// wins over it. Empty means "quotagate".
	ServiceName string
	// Version is the service.version resource attribute; empty means unset.
	Version string
	// TraceStdout also writes every sampled span, pretty-printed, to Stdout
	// (the --trace-stdout flag, for debugging).
	TraceStdout bool
	// Stdout is where TraceStdout writes; nil means os.Stdout.
	Stdout io.Writer
	// Getenv reads the OTEL_* variables; it is the only way Setup reads
	// the environment. Nil means no variable is set: nothing is exported
	// over OTLP, and the Prometheus handler still works.
	Getenv func(string) string
	// SampleAllowed and SampleRejected are the probabilities of keeping an
	// allowed and a rejected decision's span (see NewSampler). They are
	// taken as given, zero included; config's tracing block defaults them
	// to DefaultSampleAllowed and DefaultSampleRejected.
	SampleAllowed, SampleRejected float64
}

// Providers holds the tracer and meter providers and the propagator that
// Setup built. Its methods are safe for concurrent use.
type Providers struct {
	// TracerProvider is a no-op provider when no span exporter is
	// configured, so that an unexported span costs nothing.
	TracerProvider trace.TracerProvider
	// MeterProvider always has the Prometheus reader, and an OTLP reader
	// when a metrics endpoint is configured.
	MeterProvider metric.MeterProvider
	// Propagator extracts trace context, as chosen by OTEL_PROPAGATORS
	// (default "tracecontext,baggage"; "b3" and "b3multi" are accepted).
	Propagator propagation.TextMapPropagator

	tracing bool // a span exporter is configured
	// sampleAllowed is the sampler's ratio for root allows, which the
	// Recorder applies before starting a span.
	sampleAllowed float64
	metrics       http.Handler
	// registry is the one /metrics serves: the OTel instruments, the Go
	// runtime and process collectors, and the gRPC server metrics.
	registry *prometheus.Registry
	// targets are the OTLP exporters in use, for the startup log.
	targets  []ExporterTarget
	flushers []func(context.Context) error
	closers  []func(context.Context) error
	once     sync.Once
	err      error
}

// Setup builds the providers from opts and the OTEL_* variables read
// through opts.Getenv: OTEL_EXPORTER_OTLP_ENDPOINT and its _TRACES_ and
// _METRICS_ forms, the matching _HEADERS and _PROTOCOL (grpc or
// http/protobuf, the default), OTEL_TRACES_EXPORTER and
// OTEL_METRICS_EXPORTER (otlp or none), OTEL_METRIC_EXPORT_INTERVAL,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_PROPAGATORS. Nothing
// is exported when no endpoint is set. Setup starts the exporters'
// background goroutines; call Shutdown to flush and stop them.
func Setup(ctx context.Context, opts Options) (*Providers, error) {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	res, err := newResource(opts)
	if err != nil {
		return nil, err
	}
	prop, err := newPropagator(opts.Getenv)
	if err != nil {
		return nil, err
	}
	p := &Providers{Propagator: prop, sampleAllowed: clamp01(opts.SampleAllowed)}
	if err := p.setupTraces(ctx, opts, res); err != nil {
		_ = p.Shutdown(ctx)
		return nil, err
	}
	if err := p.setupMetrics(ctx, opts, res); err != nil {
		_ = p.Shutdown(ctx)
		return nil, err
	}
	return p, nil
}

func newPropagator(getenv func(string) string) (propagation.TextMapPropagator, error) {
	v := getenv("OTEL_PROPAGATORS")
	if strings.TrimSpace(v) == "" {
		v = "tracecontext,baggage"
	}
	var names []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	prop, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTEL_PROPAGATORS %q: %w (known: tracecontext, baggage, b3, b3multi, jaeger, xray, ottrace, none)", v, err)
	}
	return prop, nil
}

func (p *Providers) setupTraces(ctx context.Context, opts Options, res *resource.Resource) error {
	tOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(NewSampler(opts.SampleAllowed, opts.SampleRejected)),
	}
	exporters := 0
	enabled, err := exporterEnabled(opts.Getenv, "OTEL_TRACES_EXPORTER")
	if err != nil {
		return err
	}
	target, err := signalTarget(opts.Getenv, "TRACES")
	if err != nil {
		return err
	}
	if enabled && target.endpoint != "" {
		exp, err := newTraceExporter(ctx, target)
		if err != nil {
			return err
		}
		batch, err := exportBatchSpans(opts.Getenv)
		if err != nil {
			return err
		}
		tOpts = append(tOpts, sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(batch)))
		p.targets = append(p.targets, exporterTarget("TRACES", target))
		exporters++
	}
	if opts.TraceStdout {
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
		if err != nil {
			return fmt.Errorf("telemetry: stdout trace exporter: %w", err)
		}
		tOpts = append(tOpts, sdktrace.WithSyncer(exp))
		exporters++
	}
	if exporters == 0 {
		p.TracerProvider = noop.NewTracerProvider()
		return nil
	}
	tp := sdktrace.NewTracerProvider(tOpts...)
	p.TracerProvider = tp
	p.tracing = true
	p.flushers = append(p.flushers, tp.ForceFlush)
	p.closers = append(p.closers, tp.Shutdown)
	return nil
}

func (p *Providers) setupMetrics(ctx context.Context, opts Options, res *resource.Resource) error {
	reg := prometheus.NewRegistry()
	// Every series is an instrument of quotagate's own: the otel_scope_*
	// labels would only repeat the package that recorded it.
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	// The Go runtime and process metrics under their standard names
	// (go_goroutines, go_memstats_*, process_cpu_seconds_total, ...).
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("telemetry: Go runtime metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fmt.Errorf("telemetry: process metrics: %w", err)
	}
	p.registry = reg
	p.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	enabled, err := exporterEnabled(opts.Getenv, "OTEL_METRICS_EXPORTER")
	if err != nil {
		return err
	}
	target, err := signalTarget(opts.Getenv, "METRICS")
	if err != nil {
		return err
	}
	if enabled && target.endpoint != "" {
		interval, err := exportInterval(opts.Getenv)
		if err != nil {
			return err
		}
		exp, err := newMetricExporter(ctx, target)
		if err != nil {
			return err
		}
		var rOpts []sdkmetric.PeriodicReaderOption
		if interval > 0 {
			rOpts = append(rOpts, sdkmetric.WithInterval(interval))
		}
		mOpts = append(mOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, rOpts...)))
		p.targets = append(p.targets, exporterTarget("METRICS", target))
	}
	mp := sdkmetric.NewMeterProvider(mOpts...)
	p.MeterProvider = mp
	p.flushers = append(p.flushers, mp.ForceFlush)
	p.closers = append(p.closers, mp.Shutdown)
	return nil
}

// MetricsHandler serves the metrics in the Prometheus text format, for
// /metrics.
func (p *Providers) MetricsHandler() http.Handler { return p.metrics }

// ForceFlush exports every span and metric recorded so far.
func (p *Providers) ForceFlush(ctx context.Context) error {
	var errs []error
	for _, f := range p.flushers {
		errs = append(errs, f(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: flush: %w", err)
	}
	return nil
}

// Shutdown flushes what is buffered and stops the exporters. It is
// idempotent: later calls return the first call's result.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.once.Do(func() {
		var errs []error
		for _, c := range p.closers {
			errs = append(errs, c(ctx))
		}
		if err := errors.Join(errs...); err != nil {
			p.err = fmt.Errorf("telemetry: shutdown: %w", err)
		}
	})
	return p.err
}
