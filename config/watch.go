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

// DefaultDebounce is how long a Watcher waits after the last file-system
// event before it first looks at the file: editors and Kubernetes write in
// several steps.
const DefaultDebounce = 200 * time.Millisecond

// DefaultSettle is how long a file must then stay unchanged (no event, and
// the same size, modification time and SHA-256) before a Watcher loads it.
// A writer that pauses for less than DefaultDebounce+DefaultSettle between
// two writes is never seen half-way.
const DefaultSettle = time.Second

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
// (SIGHUP). It loads a file only once the file is stable: after the last
// file-system event it waits Debounce, takes the file's size, modification
// time and SHA-256, waits Settle, and loads only if nothing changed in
// between; any event starts the wait again. A file that is still being
// written is therefore never loaded, and a half-written file that fails to
// parse is not reported as a refused reload. A reload loads and validates
// the whole file before calling apply; a stable file that fails to load
// changes nothing, and the failure is logged and recorded in Status. It is
// safe for concurrent use.
//
// Watcher watches directories, not the file, so that it follows editors
// that write a new file and rename it over the old one. It follows
// symbolic links from the path: it watches the directory of every link on
// the way to the file and of every symlinked directory on that way, and
// re-adds its watches after a swap, so that Kubernetes ConfigMap volumes,
// which atomically rename a "..data" symlink, are followed too.
//
// Once a loaded configuration sets require_encryption, the Watcher refuses
// every plaintext file until the process restarts, even one that does not
// set it; set LoadOptions.RequireEncryption when the configuration the
// process started with required it.
type Watcher struct {
	// Debounce is how long the directory must be quiet before the file is
	// first looked at; zero means DefaultDebounce. Set it before Run.
	Debounce time.Duration
	// Settle is how long the file must then stay unchanged before it is
	// loaded; zero means DefaultSettle. Set it before Run.
	Settle time.Duration

	path     string
	apply    func(*File) error
	log      *slog.Logger
	requests chan struct{}
	watching chan struct{} // closed once Run watches the directory

	reloadMu sync.Mutex // serializes reloads; guards opts, lastHash and hashed
	opts     LoadOptions
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

// fileState is what a Watcher compares to decide that a file is stable.
type fileState struct {
	size    int64
	modTime time.Time
	sum     [sha256.Size]byte
	err     string
	data    []byte
}

func (a fileState) same(b fileState) bool {
	return a.size == b.size && a.modTime.Equal(b.modTime) && a.sum == b.sum && a.err == b.err
}

// observe reads the file, following symbolic links.
func (w *Watcher) observe() fileState {
	fi, err := os.Stat(w.path)
	if err != nil {
		return fileState{err: err.Error()}
	}
	data, err := ReadFile(w.path)
	if err != nil {
		return fileState{err: err.Error()}
	}
	return fileState{size: fi.Size(), modTime: fi.ModTime(), sum: sha256.Sum256(data), data: data}
}

// Run watches the file until ctx is done, then returns nil. It returns an
// error only if the file's directory cannot be watched. Changes that leave
// the file's bytes as they were last loaded do not reload. Call Run once.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", w.path, err)
	}
	defer fw.Close()
	dir, err := filepath.Abs(filepath.Dir(w.path))
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", w.path, err)
	}
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("config: watch directory %s: %w", dir, err)
	}
	ws := watchSet{root: dir, dirs: map[string]bool{dir: true}}
	ws.update(fw, w.path, w.log)
	close(w.watching)
	debounce, settle := w.Debounce, w.Settle
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if settle <= 0 {
		settle = DefaultSettle
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	var (
		pending  bool      // an event or a request is waiting for the file to settle
		force    bool      // the pending reload was requested (SIGHUP): load even unchanged bytes
		observed bool      // seen holds the file as it was one Settle ago
		seen     fileState //
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if ws.concerns(ev) {
				ws.update(fw, w.path, w.log)
				pending, observed = true, false
				timer.Reset(debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("config watch error; changes may be missed until the next event or SIGHUP", "path", w.path, "err", err)
		case <-timer.C:
			if !pending {
				continue
			}
			cur := w.observe()
			if !observed || !cur.same(seen) {
				// First look, or still changing: look again once it has
				// had Settle to finish.
				seen, observed = cur, true
				timer.Reset(settle)
				continue
			}
			ws.update(fw, w.path, w.log)
			_ = w.reloadState(cur, force)
			pending, force, observed, seen = false, false, false, fileState{}
		case <-w.requests:
			ws.update(fw, w.path, w.log)
			pending, force, observed = true, true, false
			timer.Reset(0)
		}
	}
}

// Reload asks Run to reload the file, even if it has not changed (the
// server calls it on SIGHUP), as soon as it is stable: after Settle
// without a change. It does not wait; see Status for the result.
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

func (w *Watcher) reload(force bool) error { return w.reloadState(w.observe(), force) }

// reloadState loads and applies the file as observed in st, unless its
// bytes are those last loaded and force is false. A configuration that
// sets require_encryption makes it stick for every later reload.
func (w *Watcher) reloadState(st fileState, force bool) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	var err error
	if st.err == "" {
		if !force && w.hashed && st.sum == w.lastHash {
			return nil
		}
		w.lastHash, w.hashed = st.sum, true
		var f *File
		if f, err = LoadData(w.path, st.data, w.opts); err == nil {
			if aerr := w.apply(f); aerr != nil {
				err = fmt.Errorf("config: %s: the new configuration was not applied: %w", w.path, aerr)
			} else if f.RequireEncryption {
				w.opts.RequireEncryption = true
			}
		}
	} else {
		err = fmt.Errorf("config: %s", st.err)
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
