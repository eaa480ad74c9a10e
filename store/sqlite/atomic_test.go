package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quotagate/quotagate/engine"
	"github.com/quotagate/quotagate/ledger"
	"github.com/quotagate/quotagate/store/sqlite"
)

// TestSaveWithLedgerIsAtomic commits snapshots and ledger records in one
// transaction, the way durability "sync" keeps balances and the ledger
// exactly in step: when the ledger write fails, the snapshot is not saved
// either, and only that caller sees the failure.
func TestSaveWithLedgerIsAtomic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "quotagate.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{Durability: sqlite.DurabilitySync})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	led, err := ledger.Open(ctx, path, ledger.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()

	const callers = 24
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			snap := engine.Snapshot{Key: fmt.Sprintf("user-%d", i), Version: 1, Credits: int64(i)}
			rec := ledger.Record{ID: uuid.Must(uuid.NewV7()), Time: time.Now(), Kind: ledger.KindCharge,
				Subject: snap.Key, BalanceOwner: snap.Key, Charged: 1, Allowed: true}
			errs[i] = st.SaveWith(ctx, []engine.Snapshot{snap}, func(ctx context.Context, tx *sql.Tx) error {
				if i%3 == 0 {
					return errors.New("injected ledger failure")
				}
				return led.AppendTx(ctx, tx, []ledger.Record{rec})
			})
		})
	}
	wg.Wait()

	charged, err := led.ChargedByOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range callers {
		key := fmt.Sprintf("user-%d", i)
		_, saved, err := st.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		failed := i%3 == 0
		if (errs[i] != nil) != failed || saved == failed || (charged[key] == 1) == failed {
			t.Errorf("%s: err %v, snapshot saved %v, ledgered %d; want all or nothing (failure injected: %v)",
				key, errs[i], saved, charged[key], failed)
		}
	}
	if res, err := led.Verify(ctx); err != nil || !res.OK || res.Records != callers-callers/3 {
		t.Fatalf("Verify = %+v, %v; want %d records", res, err, callers-callers/3)
	}
}
