package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a Watcher waits for a file to stop changing
// before it reloads: editors and Kubernetes write in several steps.
const DefaultDebounce = 200 * time.Millisecond

// ReloadStatus describes a Watcher's reloads, for health and admin status.
type ReloadStatus struct {
	// LastAttempt is when a reload was last tried; zero if never.
	LastAttempt time.Time
	// LastSuccess is when a configuration was last applied; zero if never.
	LastSuccess time.Time
	// Generation counts the configurations applied by the watcher.
	Generation uint64
	// Failures counts reloads that were refused because the file did not
	// load or apply failed.
	Failures uint64
	// LastError is why the last attempt failed, with the field paths of
	// every problem; empty when it succeeded.
	LastError string
}

// Watcher reloads a configuration file when it changes and when asked to
// (SIGHUP). A reload loads and validates the whole file before calling
// apply; a file that fails to load changes nothing, and the failure is
// logged and recorded in Status. It is safe for concurrent use.
//
// Watcher watches the file's directory, not the file, so that it follows
// editors that write a new file and rename it over the old one, and
// Kubernetes ConfigMap volumes, which swap a "..data" symlink.
type Watcher struct {
	// Debounce is how long the file must be quiet before a reload; zero
	// means DefaultDebounce. Set it before Run.
	Debounce time.Duration

	path     string
	opts     LoadOptions
	apply    func(*File) error
	log      *slog.Logger
	requests chan struct{}
	watching chan struct{} // closed once Run watches the directory

	reloadMu sync.Mutex // serializes reloads; guards lastHash
	lastHash [sha256.Size]byte
	hashed   bool

	statusMu sync.Mutex
	status   ReloadStatus
}

// NewWatcher returns a Watcher for the file at path that calls apply with
// every new valid configuration. A nil logger discards logs. It starts
// nothing; call Run.
func NewWatcher(path string, opts LoadOptions, apply func(*File) error, logger *slog.Logger) *Watcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{path: path, opts: opts, apply: apply, log: logger,
		requests: make(chan struct{}, 1), watching: make(chan struct{})}
}

// Run watches the file until ctx is done, then returns nil. It returns an
// error only if the directory cannot be watched. Changes that leave the
// file's bytes as they were last loaded do not reload. Call Run once.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", w.path, err)
	}
	defer fw.Close()
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("config: watch directory %s: %w", dir, err)
	}
	close(w.watching)
	debounce := w.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if w.concerns(ev) {
				timer.Reset(debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("config watch error; changes may be missed until the next event or SIGHUP", "path", w.path, "err", err)
		case <-timer.C:
			_ = w.reload(false)
		case <-w.requests:
			_ = w.reload(true)
		}
	}
}

// concerns reports whether ev may have changed the file: an event on its
// name, or on the "..data" symlink a ConfigMap volume swaps.
func (w *Watcher) concerns(ev fsnotify.Event) bool {
	name := filepath.Base(ev.Name)
	return name == filepath.Base(w.path) || name == "..data"
}

// Reload asks Run to reload the file now, even if it has not changed (the
// server calls it on SIGHUP). It does not wait; see Status for the result.
func (w *Watcher) Reload() {
	select {
	case w.requests <- struct{}{}:
	default: // a reload is already pending
	}
}

// ReloadNow reloads the file at once, even if it has not changed, and
// returns why it was refused, if it was. It may be called while Run runs.
func (w *Watcher) ReloadNow() error { return w.reload(true) }

// Status returns the reload history so far.
func (w *Watcher) Status() ReloadStatus {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	return w.status
}

func (w *Watcher) reload(force bool) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	data, err := os.ReadFile(w.path)
	if err == nil {
		sum := sha256.Sum256(data)
		if !force && w.hashed && sum == w.lastHash {
			return nil
		}
		w.lastHash, w.hashed = sum, true
		var f *File
		if f, err = LoadData(w.path, data, w.opts); err == nil {
			if aerr := w.apply(f); aerr != nil {
				err = fmt.Errorf("config: %s: the new configuration was not applied: %w", w.path, aerr)
			}
		}
	} else {
		err = fmt.Errorf("config: %w", err)
	}
	w.record(err)
	return err
}

func (w *Watcher) record(err error) {
	now := time.Now()
	w.statusMu.Lock()
	w.status.LastAttempt = now
	if err != nil {
		w.status.Failures++
		w.status.LastError = err.Error()
	} else {
		w.status.Generation++
		w.status.LastSuccess = now
		w.status.LastError = ""
	}
	st := w.status
	w.statusMu.Unlock()
	if err != nil {
		var ve *ValidationError
		problems := 1
		if errors.As(err, &ve) {
			problems = len(ve.Problems)
		}
		w.log.Error("config reload refused; keeping the previous configuration", "path", w.path, "problems", problems, "err", err, "failures", st.Failures)
		return
	}
	w.log.Info("config reloaded", "path", w.path, "generation", st.Generation)
}
