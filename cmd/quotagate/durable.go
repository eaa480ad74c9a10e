package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/quotagate/quotagate/config"
	"github.com/quotagate/quotagate/store/durable"
)

// durability resolves --durability and store.durability to sync or not.
func durability(flag string, file *config.File) (bool, error) {
	switch flag {
	case "":
		return file.Store.Durability == "sync", nil
	case "batch", "async":
		return false, nil
	case "sync":
		return true, nil
	}
	return false, exitError{code: 2, err: fmt.Errorf("serve: --durability %q: want batch or sync", flag)}
}

// openBackends opens the store and the ledger that the configuration and
// flags ask for (see store/durable). On error, whatever was opened is
// closed again.
func openBackends(ctx context.Context, file *config.File, o assembleOptions) (*durable.Backends, error) {
	sync, err := durability(o.Durability, file)
	if err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		if err := ensureDataDir(o.DataDir); err != nil {
			return nil, err
		}
	}
	b, err := durable.Open(ctx, backendOptions(file, o, sync))
	if errors.Is(err, durable.ErrNoStatePath) {
		return nil, exitError{code: 2, err: errors.New("serve: store.kind is sqlite but neither store.path nor --data-dir says where; set one of them")}
	}
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	return b, nil
}

// ensureDataDir creates dir if missing and proves it writable, so that a
// bad --data-dir is one clear line at start-up rather than a failed flush.
func ensureDataDir(dir string) error {
	fix := "choose a writable directory with --data-dir (or $QUOTAGATE_DATA_DIR), or fix its permissions"
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("serve: data directory %s cannot be created: %w; %s", dir, err, fix)
	}
	f, err := os.CreateTemp(dir, ".quotagate-write-test-*")
	if err != nil {
		return fmt.Errorf("serve: data directory %s is not writable: %w; %s", dir, err, fix)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
