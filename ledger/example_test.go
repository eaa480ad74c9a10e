package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/ledger"
)

// Example shows the server's use of a ledger: open it, run the Writer in
// the background, append a record per decision, flush on shutdown, report.
func Example() {
	dir, _ := os.MkdirTemp("", "ledger-example-*")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	led, err := ledger.Open(ctx, filepath.Join(dir, "ledger.db"), ledger.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer led.Close()
	w := ledger.NewWriter(led, ledger.WriterOptions{Retention: 90 * 24 * time.Hour})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }() // in serve: one errgroup member

	at := time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)
	for i := range 3 {
		// In serve: w.Append(ledger.FromDecision(&decision, traceID, now)).
		w.Append(ledger.Record{
			ID: uuid.Must(uuid.NewV7()), Time: at.Add(time.Duration(i) * time.Minute), Kind: ledger.KindCharge,
			Subject: "alice", Tier: "standard", Action: "translate", Units: 250, Cost: 4, Charged: 4,
			Allowed: true, Reason: "ok", BalanceOwner: "alice",
		})
	}
	stop() // shutdown: Run flushes what is queued and returns
	if err := <-done; err != nil {
		fmt.Println(err)
		return
	}

	rows, _ := led.Usage(ctx, ledger.Query{Subject: "alice", From: at, To: at.Add(time.Hour), By: ledger.GrainHour})
	for _, r := range rows {
		fmt.Println(r.Period.Format(time.RFC3339), r.Calls, r.Units, r.Tokens, r.Rejections)
	}
	res, _ := led.Verify(ctx)
	fmt.Println(res)
	// Output:
	// 2026-05-04T10:00:00Z 3 750 12 0
	// ok: 3 records, seq 1 to 3, chain intact
}
