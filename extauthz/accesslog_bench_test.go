package extauthz

import (
	"context"
	"strconv"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"

	"github.com/quotagate/quotagate/engine"
)

// BenchmarkAccessLog is the settlement CPU per log entry through the gRPC
// service over bufconn (transport, codec, the engine's Settle), in batches
// of batch entries as Envoy's access logger buffers them. The decisions
// are made before the timer starts; each entry refunds one (503) or
// adjusts it from a usage header. ns/op is per entry.
func BenchmarkAccessLog(b *testing.B) {
	for _, batch := range []int{1, 100} {
		for _, kind := range []string{"refund", "adjust"} {
			b.Run("batch="+strconv.Itoa(batch)+"/"+kind, func(b *testing.B) {
				benchAccessLog(b, batch, kind == "adjust")
			})
		}
	}
}

func benchAccessLog(b *testing.B, batch int, adjust bool) {
	f := newALSFixture(b, AccessLogOptions{}, func(cfg *engine.Rules, opts *engine.Options) {
		cfg.Tiers["freemium"] = engine.TierConfig{Limits: hourly(1 << 40), Tokens: engine.TokenGrant{Amount: 1 << 40, Period: month()}}
		opts.PendingSize = 1 << 22
	})
	eng := f.eng
	// Decide b.N requests first, outside the timer, over 64 subjects.
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		d, err := eng.Charge(ctx, engine.Request{Subject: "u" + strconv.Itoa(i%64), Action: "translate", Units: 300})
		if err != nil || !d.Allowed {
			b.Fatalf("charge %d: %v %v", i, d.Reason, err)
		}
		ids[i] = d.ID.String()
	}
	msgs := make([]*alsv3.StreamAccessLogsMessage, 0, b.N/batch+1)
	for i := 0; i < len(ids); i += batch {
		var entries []*accesslogv3.HTTPAccessLogEntry
		for _, id := range ids[i:min(i+batch, len(ids))] {
			if adjust {
				entries = append(entries, logEntry(id, 200, map[string]string{"x-usage-words": "250", "content-type": "application/json"}))
			} else {
				entries = append(entries, logEntry(id, 503, map[string]string{"content-type": "application/json"}))
			}
		}
		msgs = append(msgs, logBatch(i == 0, entries...))
	}
	st, err := f.als.StreamAccessLogs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if held := eng.PendingStats().Held; held != 0 {
		b.Fatalf("%d decisions left unsettled", held)
	}
}
