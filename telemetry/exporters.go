package telemetry

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
)

// ExporterTarget describes one OTLP exporter Setup configured, for the
// startup log.
type ExporterTarget struct {
	// Signal is "traces" or "metrics".
	Signal string
	// Endpoint is the URL the exporter sends to (for http/protobuf, with
	// the signal's path).
	Endpoint string
	// Protocol is "grpc" or "http/protobuf".
	Protocol string
	// ProtocolVar is the variable that chose Protocol, or "" for the
	// default (http/protobuf).
	ProtocolVar string
	// Warning, when not empty, says that the endpoint's port is the other
	// protocol's well-known port (4317 is OTLP/gRPC, 4318 OTLP/HTTP), and
	// what to set.
	Warning string
}

// LogAttrs returns the target as slog attributes.
func (t ExporterTarget) LogAttrs() []any {
	return []any{"signal", t.Signal, "endpoint", t.Endpoint, "protocol", t.Protocol}
}

// Exporters returns the OTLP exporters in use, traces first; none when
// nothing is exported.
func (p *Providers) Exporters() []ExporterTarget { return p.targets }

// exporterTarget describes t for signal ("TRACES" or "METRICS"),
// warning when its port and protocol disagree.
func exporterTarget(signal string, t otlpTarget) ExporterTarget {
	et := ExporterTarget{Signal: strings.ToLower(signal), Endpoint: t.endpoint, Protocol: t.protocol, ProtocolVar: t.protocolVar}
	u, err := url.Parse(t.endpoint)
	if err != nil {
		return et
	}
	other := protoGRPC
	if t.protocol == protoGRPC {
		other = protoHTTP
	}
	mismatch := false
	switch port := u.Port(); {
	case port == "4317" && t.protocol == protoHTTP, port == "4318" && t.protocol == protoGRPC:
		mismatch = true
	case t.protocol == protoGRPC && strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/v1/"+et.Signal):
		// An OTLP/HTTP path given to the gRPC exporter.
		mismatch = true
	}
	if !mismatch {
		return et
	}
	set := t.protocolVar
	if set == "" {
		set = "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	et.Warning = fmt.Sprintf("the OTLP %s endpoint %s looks like an OTLP/%s endpoint, but the protocol is %s: "+
		"set %s=%s, or point the endpoint at the collector's OTLP/%s port (%s by default)",
		et.Signal, t.endpoint, protoLabel(other), t.protocol, set, other, protoLabel(t.protocol), wellKnownPort(t.protocol))
	return et
}

// protoLabel names a protocol as collectors document their receivers.
func protoLabel(p string) string {
	if p == protoGRPC {
		return "gRPC"
	}
	return "HTTP"
}

// wellKnownPort is the port collectors receive protocol p on by default.
func wellKnownPort(p string) string {
	if p == protoGRPC {
		return "4317"
	}
	return "4318"
}

// ErrorHandler returns the otel.ErrorHandler that logs the OpenTelemetry
// SDK's errors (a failed export, a dropped span) to logger as JSON, at warn
// level and at most once per interval; the line says how many were
// suppressed since the last one. When the error is what one protocol's
// exporter gets from the other protocol's receiver, the line also says
// what to set. Install it with otel.SetErrorHandler. now is the clock;
// nil means time.Now. It is safe for concurrent use.
func (p *Providers) ErrorHandler(logger *slog.Logger, interval time.Duration, now func() time.Time) otel.ErrorHandler {
	if now == nil {
		now = time.Now
	}
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &errorHandler{logger: logger, lim: newLimiter(1 / interval.Seconds()), now: now, targets: p.targets}
}

// errorHandler is the otel.ErrorHandler that ErrorHandler returns.
type errorHandler struct {
	logger  *slog.Logger
	lim     *limiter
	now     func() time.Time
	targets []ExporterTarget
	mu      sync.Mutex
}

// Handle implements otel.ErrorHandler.
func (h *errorHandler) Handle(err error) {
	if err == nil {
		return
	}
	ok, suppressed := h.lim.allow(h.now())
	if !ok {
		return
	}
	attrs := []any{"error", err.Error()}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	if hint := protocolHint(err.Error(), h.targets); hint != "" {
		attrs = append(attrs, "hint", hint)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logger.Warn("opentelemetry export failed", attrs...)
}

// mismatchSigns are fragments of the errors an OTLP exporter gets when the
// endpoint speaks the other protocol: an HTTP/1.1 client reading an HTTP/2
// frame ("malformed HTTP response"), a gRPC client reading an HTTP/1.1
// reply (no server preface, a 404 or a text/plain content type), or a
// gRPC receiver that does not know the HTTP path.
var mismatchSigns = []string{
	"malformed HTTP response", "server preface", "frame too large", "unexpected HTTP status code",
	"content-type", "Unimplemented", "http2: ", "PROTOCOL_ERROR", "unsupported protocol",
}

// protocolHint says what to set when msg looks like a protocol mismatch
// with one of targets; it is empty otherwise.
func protocolHint(msg string, targets []ExporterTarget) string {
	looks := false
	for _, s := range mismatchSigns {
		if strings.Contains(msg, s) {
			looks = true
			break
		}
	}
	if !looks || len(targets) == 0 {
		return ""
	}
	var parts []string
	for _, t := range targets {
		other := protoGRPC
		if t.Protocol == protoGRPC {
			other = protoHTTP
		}
		set := t.ProtocolVar
		if set == "" {
			set = "OTEL_EXPORTER_OTLP_PROTOCOL"
		}
		parts = append(parts, fmt.Sprintf("the %s exporter sends OTLP/%s (%s) to %s; if that port is the collector's OTLP/%s receiver, set %s=%s",
			t.Signal, protoLabel(t.Protocol), t.Protocol, t.Endpoint, protoLabel(other), set, other))
	}
	return "this error is what an exporter gets from a receiver of the other OTLP protocol: " + strings.Join(parts, "; ")
}
