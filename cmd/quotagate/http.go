package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/quotagate/quotagate/admin"
)

// httpMux serves the operational endpoints on --http-addr.
func (a *app) httpMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("draining\n"))
			return
		}
		w.Write([]byte("ready\n"))
		if st := a.configStatus(); st.LastError != "" {
			// Still ready: the previous configuration keeps serving.
			w.Write([]byte("config reload refused, the previous configuration is serving: " + st.LastError + "\n"))
		}
		if h := a.storeHealth(r.Context()); h != nil && !h.Healthy {
			// Still ready: each tier's failure mode decides meanwhile,
			// which is finer than Envoy's one failure_mode_allow.
			w.Write([]byte("degraded: " + h.Error + "; " + h.Effect + "\n"))
		}
	})
	mux.HandleFunc("GET /status", a.status)
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

// serveStatus is the JSON document of /status.
type serveStatus struct {
	Ready bool `json:"ready"`
	// Degraded is set while the shared store does not answer.
	Degraded bool               `json:"degraded"`
	Config   admin.ConfigStatus `json:"config"`
	Store    string             `json:"store"`
	// StoreHealth is the shared store's (Redis only).
	StoreHealth *storeHealth `json:"store_health,omitempty"`
	// Durability is batch or sync.
	Durability string `json:"durability"`
	Ledger     any    `json:"ledger,omitempty"`
	Alerts     any    `json:"alerts,omitempty"`
}

// status serves /status: readiness, whether the shared store answers, the
// configuration's reload history (with the exact field errors of a refused
// reload), and the counters of the ledger writer and the notifier.
func (a *app) status(w http.ResponseWriter, r *http.Request) {
	st := serveStatus{Ready: a.ready.Load(), Config: a.configStatus(), Store: a.backends.Desc, Durability: "batch",
		StoreHealth: a.storeHealth(r.Context())}
	st.Degraded = st.StoreHealth != nil && !st.StoreHealth.Healthy
	if a.backends.Sync {
		st.Durability = "sync"
	}
	if a.backends.Writer != nil {
		st.Ledger = a.backends.Writer.Stats()
	}
	if a.notifier != nil {
		st.Alerts = a.notifier.Stats()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// storeHealth is whether the shared store answers.
type storeHealth struct {
	Healthy bool `json:"healthy"`
	// Error is why it does not answer, and Effect what that means for
	// Checks meanwhile.
	Error  string `json:"error,omitempty"`
	Effect string `json:"effect,omitempty"`
}

// storeHealth pings the shared store within its Check deadline, so that a
// health probe tells the truth even when no Check went out lately. It
// returns nil when there is no shared store (state in memory or SQLite).
func (a *app) storeHealth(ctx context.Context) *storeHealth {
	if a.backends.Redis == nil {
		return nil
	}
	if err := a.backends.Redis.Ping(ctx); err != nil {
		return &storeHealth{Error: err.Error(),
			Effect: "each tier's failure_mode applies: open tiers are allowed (counted in this replica's cache), closed tiers get 503"}
	}
	return &storeHealth{Healthy: true}
}

// degraded says why this replica is degraded, for the dashboard, from the
// outcome of the last call to the shared store (no call of its own: the
// dashboard asks every second); "" when it is not.
func (a *app) degraded() string {
	r := a.backends.Redis
	if r == nil || r.Healthy() {
		return ""
	}
	return fmt.Sprintf("Redis does not answer (%v); each tier's failure_mode applies", r.LastError())
}
