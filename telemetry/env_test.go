package telemetry

import (
	"context"
	"maps"
	"strings"
	"testing"
)

func TestSignalTarget(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		signal  string
		want    otlpTarget
		wantErr string
	}{
		{name: "nothing set exports nothing", signal: "TRACES", want: otlpTarget{protocol: protoHTTP, headers: map[string]string{}}},
		{name: "generic endpoint over http gets the signal path", signal: "TRACES",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
			want: otlpTarget{endpoint: "http://collector:4318/v1/traces", protocol: protoHTTP, headers: map[string]string{}}},
		{name: "generic endpoint over grpc is used as is", signal: "METRICS",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: otlpTarget{endpoint: "http://collector:4317", protocol: protoGRPC, headers: map[string]string{}}},
		{name: "signal endpoint, protocol and headers win", signal: "TRACES",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/custom",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
				"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=3, api-key = x%20y",
			},
			want: otlpTarget{endpoint: "https://b/custom", protocol: protoHTTP, headers: map[string]string{"a": "1", "b": "3", "api-key": "x y"}}},
		{name: "unknown protocol", signal: "TRACES", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "want grpc or http/protobuf"},
		{name: "bad headers", signal: "METRICS", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, wantErr: "OTEL_EXPORTER_OTLP_HEADERS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signalTarget(envMap(tt.env), tt.signal)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.endpoint != tt.want.endpoint || got.protocol != tt.want.protocol || !maps.Equal(got.headers, tt.want.headers) {
				t.Errorf("target = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown propagator", env: map[string]string{"OTEL_PROPAGATORS": "tracecontext,zipkin"}, wantErr: "OTEL_PROPAGATORS"},
		{name: "bad resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "a"}, wantErr: "OTEL_RESOURCE_ATTRIBUTES"},
		{name: "unknown traces exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "OTEL_TRACES_EXPORTER"},
		{name: "bad export interval", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_METRIC_EXPORT_INTERVAL": "soon"}, wantErr: "OTEL_METRIC_EXPORT_INTERVAL"},
		{name: "bad export batch", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "0"}, wantErr: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
		{name: "export batch not a number", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "lots"}, wantErr: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Setup(context.Background(), Options{Getenv: envMap(tt.env)})
			if err == nil {
				_ = p.Shutdown(context.Background())
				t.Fatalf("Setup succeeded, want an error about %s", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "telemetry: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want a telemetry error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestNoEndpointExportsNothing(t *testing.T) {
	p, err := Setup(context.Background(), Options{Getenv: envMap(map[string]string{"OTEL_SERVICE_NAME": "x"}), SampleAllowed: 1, SampleRejected: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if _, span := p.TracerProvider.Tracer("t").Start(context.Background(), "s"); span.IsRecording() {
		t.Errorf("span is recording with no exporter configured")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestResourceAttributes(t *testing.T) {
	res, err := newResource(Options{ServiceName: "quotagate", Version: "1.2.3", Getenv: envMap(map[string]string{
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=ignored",
		"OTEL_SERVICE_NAME":        "qg-eu",
	})})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.AsString()
	}
	want := map[string]string{"service.name": "qg-eu", "service.version": "1.2.3", "deployment.environment": "prod"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
