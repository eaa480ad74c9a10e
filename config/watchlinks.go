package config

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// maxLinkHops bounds how many symbolic links a Watcher follows from the
// configuration path, as the kernel bounds path resolution.
const maxLinkHops = 40

// watchSet is the directories a Watcher watches, and the names in each
// that lead to the file.
type watchSet struct {
	root  string                     // the directory of the path, always watched
	dirs  map[string]bool            // every watched directory
	names map[string]map[string]bool // directory -> names on the way to the file
}

// concerns reports whether ev may have changed the file: an event on a
// name on the way to it (the file, a link to it, a symlinked directory such
// as a ConfigMap's "..data").
func (ws *watchSet) concerns(ev fsnotify.Event) bool {
	dir, name := filepath.Split(ev.Name)
	return ws.names[filepath.Clean(dir)][name]
}

// update recomputes the way from path to the file through its symbolic
// links and watches every directory on it, dropping watches no longer
// needed. A directory that cannot be watched is logged and retried on the
// next event.
func (ws *watchSet) update(fw *fsnotify.Watcher, path string, log *slog.Logger) {
	names := linkPath(path)
	if names[ws.root] == nil {
		names[ws.root] = map[string]bool{}
	}
	names[ws.root][filepath.Base(path)] = true
	if rootInfo, err := os.Stat(ws.root); err == nil {
		for dir, ns := range names {
			// The root reached through a symlinked path is the same
			// directory: one watch, whose events carry the root's name.
			if fi, err := os.Stat(dir); err == nil && dir != ws.root && os.SameFile(fi, rootInfo) {
				for n := range ns {
					names[ws.root][n] = true
				}
				delete(names, dir)
			}
		}
	}
	ws.names = names
	for dir := range names {
		if ws.dirs[dir] {
			continue
		}
		if err := fw.Add(dir); err != nil {
			log.Warn("config watch: cannot watch a directory on the way to the file; changes there may be missed until the next event or SIGHUP", "dir", dir, "err", err)
			continue
		}
		ws.dirs[dir] = true
	}
	for dir := range ws.dirs {
		if names[dir] == nil && dir != ws.root {
			_ = fw.Remove(dir) // already gone when the directory was removed
			delete(ws.dirs, dir)
		}
	}
}

// linkPath follows path through its symbolic links and returns, for every
// directory on the way (each resolved, without links), the names in it
// whose change would change what path reads: each link, each symlinked
// directory component, and the file itself.
func linkPath(path string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	add := func(dir, name string) {
		if out[dir] == nil {
			out[dir] = map[string]bool{}
		}
		out[dir][name] = true
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return out
	}
	for range maxLinkHops {
		dir, name := filepath.Split(p)
		rdir, ok := resolveDir(filepath.Clean(dir), add)
		if !ok {
			return out
		}
		add(rdir, name)
		full := filepath.Join(rdir, name)
		fi, err := os.Lstat(full)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return out
		}
		target, err := os.Readlink(full)
		if err != nil {
			return out
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(rdir, target)
		}
		p = filepath.Clean(target)
	}
	return out
}

// resolveDir resolves the symbolic links in the absolute directory dir,
// calling add(parent, name) for each symlinked component. It reports false
// if dir cannot be resolved (a missing component, a loop).
func resolveDir(dir string, add func(dir, name string)) (string, bool) {
	cur := string(filepath.Separator)
	rest := strings.Split(strings.TrimPrefix(dir, cur), string(filepath.Separator))
	for hops := 0; len(rest) > 0; {
		comp := rest[0]
		rest = rest[1:]
		if comp == "" || comp == "." {
			continue
		}
		if comp == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, comp)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", false
		}
		add(cur, comp)
		target, err := os.Readlink(next)
		if err != nil {
			return "", false
		}
		if filepath.IsAbs(target) {
			cur = string(filepath.Separator)
		}
		rest = append(strings.Split(target, string(filepath.Separator)), rest...)
	}
	return cur, true
}
