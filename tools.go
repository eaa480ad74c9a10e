//go:build tools

// This file pins modules while the packages that use them are being
// written; it is removed once every one is imported for real.
package quotagate

import (
	_ "filippo.io/age"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/google/uuid"
	_ "github.com/hashicorp/golang-lru/v2/simplelru"
	_ "github.com/prometheus/common/expfmt"
	_ "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	_ "go.opentelemetry.io/contrib/propagators/autoprop"
	_ "go.opentelemetry.io/contrib/propagators/b3"
	_ "go.opentelemetry.io/otel"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/exporters/prometheus"
	_ "go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	_ "go.opentelemetry.io/otel/sdk/metric"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sync/errgroup"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
	_ "sigs.k8s.io/yaml"
	_ "github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/emersion/go-smtp"
	_ "github.com/chromedp/chromedp"
)
