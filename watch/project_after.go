package watch

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
)

// Projecting a quiet tree (Options.ProjectAfter): once the watched tree has
// seen no event for that long and files were stored since it was last
// projected, the watcher runs the ingest that projects it in place (tier1,
// Options.Method), which reads nothing: every file is stored as recorded.
//
// The projection's own changes reach the watcher as events like anyone's.
// From the projection's start until a cookie the watcher makes after it
// (so every event before it in the stream is known), file renames and
// directory attribute changes are held; then each held file that is now a
// projection (a symlink into the store, or a read-only hardlink) and each
// held directory that holds one is dropped, and only the rest is stored.
// The watcher so processes no event of its own making.

type ownEvents struct {
	active bool
	held   map[string]bool // key -> is a directory
	// ended is closed when the cookie after the projection is seen.
	ended  chan struct{}
	cookie string
}

// holdOwn holds an event while a projection's own events may come.
func (w *Watcher) holdOwn(key string, dir bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.own.active {
		return false
	}
	w.own.held[key] = dir
	return true
}

// ownEventsEnd sees the cookie made after a projection.
func (w *Watcher) ownEventsEnd(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.own.active && name == w.own.cookie {
		w.own.active = false
		close(w.own.ended)
	}
	unix.Unlinkat(w.lock.dirFD, name, 0)
}

// projectQuiet projects the watched tree if it is due.
func (w *Watcher) projectQuiet(ctx context.Context) error {
	w.mu.Lock()
	due := w.opts.ProjectAfter > 0 && w.storedSinceProjection && len(w.dirty)+len(w.busy)+len(w.cookies) == 0 &&
		time.Since(w.lastEvent) >= w.opts.ProjectAfter
	if due {
		w.own = ownEvents{active: true, held: map[string]bool{}, ended: make(chan struct{}),
			cookie: fmt.Sprintf("%s%d-%d", selfCookiePrefix, os.Getpid(), time.Now().UnixNano())}
	}
	w.mu.Unlock()
	if !due {
		return nil
	}
	res, err := w.opts.Store.Ingest(ctx, engine.IngestOptions{Dir: w.dir, Tier: engine.Tier1, Mode: engine.Solid,
		Method: w.opts.Method, AllowOtherOwner: w.opts.AllowOtherOwner, Warn: w.opts.Warn})
	// The cookie goes last: every event of the projection is before it.
	if werr := createAt(w.lock.dirFD, w.own.cookie); werr != nil {
		w.mu.Lock()
		w.own.active = false
		w.mu.Unlock()
		return fmt.Errorf("project %s: %w", w.dir, werr)
	}
	var lost error
	select {
	case <-w.own.ended:
	case <-time.After(time.Minute):
		// Never held for good: what was held is sorted as below, and
		// the tree rescanned in case the cookie went with an overflow.
		lost = fmt.Errorf("project %s: the watcher never saw its own cookie", w.dir)
	}
	w.mu.Lock()
	if lost != nil {
		w.own.active = false
		w.rescan = true
	}
	held := w.own.held
	w.own.held = nil
	w.storedSinceProjection = false
	w.mu.Unlock()
	w.sortOwn(held)
	if lost != nil {
		return lost
	}
	if err != nil {
		return fmt.Errorf("project %s: %w", w.dir, err)
	}
	w.mu.Lock()
	w.stats.Projected += res.Projected
	w.mu.Unlock()
	return nil
}

// sortOwn drops the held events the projection made and queues the rest.
func (w *Watcher) sortOwn(held map[string]bool) {
	dirs := w.t.NewDirs()
	defer dirs.Close()
	projectedIn := map[string]bool{}
	var rest []string
	for key, isDir := range held {
		if isDir {
			continue
		}
		if w.isProjection(dirs, key) {
			parent, _ := tree.Split(key)
			projectedIn[parent] = true
			continue
		}
		rest = append(rest, key)
	}
	for key, isDir := range held {
		if isDir && !projectedIn[key] {
			rest = append(rest, key)
		}
	}
	w.mu.Lock()
	w.stats.OwnDropped += int64(len(held) - len(rest))
	w.mu.Unlock()
	for _, k := range rest {
		w.changed(k)
	}
}

// isProjection reports whether key is now a projection of a blob: a
// symlink into this store, or a read-only file with other links.
func (w *Watcher) isProjection(dirs *tree.Dirs, key string) bool {
	parent, name := tree.Split(key)
	fd, err := dirs.Get(parent)
	if err != nil {
		return false
	}
	var st unix.Stat_t
	if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := tree.Readlink(fd, name, st.Size)
		return err == nil && w.storeRoot != "" && strings.HasPrefix(string(target), w.storeRoot+"/")
	case unix.S_IFREG:
		return w.opts.Method == vfs.Hardlink && st.Nlink > 1 && st.Mode&0o222 == 0
	}
	return false
}
