package main

import (
	"net/http"
)

// httpMux serves the operational endpoints on --http-addr.
func (a *app) httpMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", a.metrics())
	return mux
}

// metrics is the /metrics mount point. Until the telemetry wiring supplies
// its Prometheus handler (telemetry.Providers.MetricsHandler), it serves an
// empty exposition, which is valid Prometheus text format.
func (a *app) metrics() http.Handler {
	if a.metricsHandler != nil {
		return a.metricsHandler
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	})
}
