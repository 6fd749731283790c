package watch

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/manifest"
)

// The macOS event source, the part that needs no macOS: what FSEvents'
// flags and paths mean for the watcher. source_darwin.go only feeds it the
// events its stream delivers; everything here builds and is tested on
// every system (fsevents_test.go).
//
// FSEvents differs from inotify in four ways that matter here:
//
//   - It is recursive and path-based: one stream watches the watched
//     directory and the cookie directory (.vrift/watch), so no watch per
//     directory, no watch limit, and a new directory needs nothing before
//     it is listed. Both are in one stream so that a sync cookie comes
//     after every event before it (event IDs are ordered within a stream).
//   - Its flags are cumulative: fseventsd coalesces the events of one path
//     within a latency window, so Created|Modified|Removed may describe a
//     file created, written and deleted in any order. Nothing here trusts
//     the order; the live refresh looks at each path as it is now, which
//     is what it already does for inotify's events.
//   - It has no close event. A file that has only been created (no other
//     flag yet) is likely open for its first write: it is held for
//     fsevOpenHold, until a later event for it (its content written, a
//     rename over it, a chmod), or a sync cookie, releases it. Every
//     release goes through the watcher's debounce (Options.Quiet) like an
//     inotify close. A file read while its writer still writes fails the
//     read's before-and-after identity check; the live refresh then counts
//     it as busy (engine/read.go), and the watcher retries it with backoff,
//     as it does on Linux for a file open elsewhere.
//   - Lost events are said, not silent: MustScanSubDirs asks for a rescan
//     of one directory (the refresh walks a directory whole), and with
//     UserDropped or KernelDropped of everything (the watcher's overflow
//     rescan, which also rereads the cookie directory). RootChanged (the
//     stream watches with kFSEventStreamCreateFlagWatchRoot) says the
//     watched directory, or one above it, was moved or deleted.

// FSEventStreamEventFlags, as in Apple's CoreServices SDK header
// FSEvents/FSEvents.h (FSEventStreamEventFlags enum). source_darwin.go
// asserts at compile time that each equals the binding's value.
const (
	fsevMustScanSubDirs  = 0x00000001
	fsevUserDropped      = 0x00000002
	fsevKernelDropped    = 0x00000004
	fsevEventIDsWrapped  = 0x00000008
	fsevHistoryDone      = 0x00000010
	fsevRootChanged      = 0x00000020
	fsevMount            = 0x00000040
	fsevUnmount          = 0x00000080
	fsevItemCreated      = 0x00000100
	fsevItemRemoved      = 0x00000200
	fsevItemInodeMetaMod = 0x00000400
	fsevItemRenamed      = 0x00000800
	fsevItemModified     = 0x00001000
	fsevItemFinderInfo   = 0x00002000
	fsevItemChangeOwner  = 0x00004000
	fsevItemXattrMod     = 0x00008000
	fsevItemIsFile       = 0x00010000
	fsevItemIsDir        = 0x00020000
	fsevItemIsSymlink    = 0x00040000
	fsevItemIsHardlink   = 0x00100000
	fsevItemCloned       = 0x00400000

	// fsevItemChange: what happened to an item (the rest of its flags
	// say what it is).
	fsevItemChange = fsevItemCreated | fsevItemRemoved | fsevItemInodeMetaMod | fsevItemRenamed | fsevItemModified |
		fsevItemFinderInfo | fsevItemChangeOwner | fsevItemXattrMod | fsevItemCloned | fsevMount | fsevUnmount
)

// fsevOpenHold is the longest a file seen only created is held back: a
// writer that creates a file and closes it without writing (touch, an
// empty file) makes no later event, so it is stored after this. A writer
// still writing after it is caught by the identity check and retried.
const fsevOpenHold = time.Second

// fsevEvent is one event of an FSEvents stream.
type fsevEvent struct {
	Path  string
	Flags uint32
}

// fsevRoot is one directory an FSEvents stream watches, under each
// spelling its events may use: FSEvents reports resolved paths (/var is
// /private/var on macOS), so both the path as given and as resolved.
type fsevRoot []string

// rel returns path relative to the root ("" for the root itself), and
// whether path is within it.
func (r fsevRoot) rel(path string) (string, bool) {
	for _, p := range r {
		if path == p {
			return "", true
		}
		if strings.HasPrefix(path, p) && len(path) > len(p) && path[len(p)] == '/' {
			return path[len(p)+1:], true
		}
	}
	return "", false
}

// fsevTranslator turns FSEvents' events into the watcher's sink calls.
type fsevTranslator struct {
	s sink
	// tree is the watched directory, subtree its key; cookies is the
	// project's watch directory (.vrift/watch), which may lie inside tree.
	tree, cookies fsevRoot
	subtree       string
	// rootStill reports whether a root a RootChanged event names is
	// still the directory the stream was started on (same device and
	// inode): then the event is a rescan, not the end.
	rootStill func(path string) bool

	mu   sync.Mutex
	held map[string]time.Time // files seen only created -> when
}

func newFSEvTranslator(s sink, tree, cookies fsevRoot, subtree string, rootStill func(string) bool) *fsevTranslator {
	return &fsevTranslator{s: s, tree: tree, cookies: cookies, subtree: subtree, rootStill: rootStill,
		held: map[string]time.Time{}}
}

// handle takes one batch of events, as the stream's callback delivers
// them, in order. An error ends the source (the watched directory is gone).
func (x *fsevTranslator) handle(evs []fsevEvent, now time.Time) error {
	for _, ev := range evs {
		if err := x.one(ev, now); err != nil {
			return err
		}
	}
	return nil
}

func (x *fsevTranslator) one(ev fsevEvent, now time.Time) error {
	f := ev.Flags
	if f&fsevRootChanged != 0 {
		if x.rootStill != nil && x.rootStill(ev.Path) {
			// Something above it moved and came back, or was
			// swapped: what the stream saw meanwhile is unknown.
			x.dropped()
			return nil
		}
		return fmt.Errorf("%s (or a directory above it) was moved or deleted: nothing left to watch", ev.Path)
	}
	if f&fsevMustScanSubDirs != 0 {
		if f&(fsevUserDropped|fsevKernelDropped) != 0 {
			x.dropped()
			return nil
		}
		// Coalesced into one directory: that directory, walked whole.
		if _, ok := x.cookies.rel(ev.Path); ok {
			x.dropped() // cookies may be among them
			return nil
		}
		rel, ok := x.tree.rel(ev.Path)
		if !ok {
			if x.above(ev.Path) {
				x.dropped()
			}
			return nil
		}
		if key, ok := x.key(rel); ok {
			x.s.changed(key)
		}
		return nil
	}
	if f&fsevItemChange == 0 {
		return nil // HistoryDone, EventIdsWrapped: nothing changed
	}
	if rel, ok := x.cookies.rel(ev.Path); ok {
		x.cookie(rel, f)
		return nil
	}
	rel, ok := x.tree.rel(ev.Path)
	if !ok || rel == "" {
		// Outside, or the watched directory's own attributes (inotify
		// does not report those either; a refresh of a file below
		// records its parent).
		return nil
	}
	key, ok := x.key(rel)
	if !ok {
		return nil
	}
	isDir := f&fsevItemIsDir != 0
	if x.s.holdOwn(key, isDir) {
		// During a projection, every event is held: FSEvents' flags do
		// not tell its renames from a user's create (they accumulate),
		// and sortOwn queues whatever is not a projection.
		x.unhold(key)
		return nil
	}
	if !isDir && f&(fsevItemIsSymlink|fsevItemIsHardlink) == 0 && f&fsevItemChange == fsevItemCreated {
		// Only created: likely still open for its first write. (A
		// symlink is whole once made, a new hard link names a file
		// written before.)
		x.mu.Lock()
		if _, ok := x.held[key]; !ok {
			x.held[key] = now
		}
		x.mu.Unlock()
		return nil
	}
	x.unhold(key)
	x.s.changed(key)
	return nil
}

// key maps a path relative to the watched directory to its manifest key;
// false for what no refresh records (.vrift, .git, temp names, anywhere
// on the path: the stream is recursive, so unlike inotify nothing stops
// events from below such a directory).
func (x *fsevTranslator) key(rel string) (string, bool) {
	if rel == "" {
		return x.subtree, true
	}
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." || engine.Unrecorded(c) {
			return "", false
		}
	}
	return manifest.Join(x.subtree, rel), true
}

// above reports whether path is a directory above the watched one.
func (x *fsevTranslator) above(path string) bool {
	for _, p := range x.tree {
		if strings.HasPrefix(p, strings.TrimSuffix(path, "/")+"/") {
			return true
		}
	}
	return false
}

// cookie handles an event in the watch directory. Only a creation counts:
// a cookie's removal (by the watcher once answered, or a syncer that gave
// up) may come with its creation's flag still set, so Created|Removed is
// a cookie already gone, not a new one.
func (x *fsevTranslator) cookie(name string, f uint32) {
	if name == "" || strings.Contains(name, "/") || f&fsevItemCreated == 0 || f&fsevItemRemoved != 0 {
		return
	}
	switch {
	case strings.HasPrefix(name, selfCookiePrefix):
		x.s.ownEventsEnd(name)
	case strings.HasPrefix(name, cookiePrefix) && !strings.HasSuffix(name, errSuffix):
		// A syncer waits for everything before its cookie, the files
		// held for their first write included.
		x.release(time.Time{})
		x.s.barrier(name)
	}
}

// dropped answers lost events: the watcher rescans the tree (and the
// cookie directory), so what is held is covered.
func (x *fsevTranslator) dropped() {
	x.mu.Lock()
	x.held = map[string]time.Time{}
	x.mu.Unlock()
	x.s.overflowed()
}

func (x *fsevTranslator) unhold(key string) {
	x.mu.Lock()
	delete(x.held, key)
	x.mu.Unlock()
}

// release passes on the files held since before cutoff (all of them for a
// zero cutoff).
func (x *fsevTranslator) release(cutoff time.Time) {
	x.mu.Lock()
	var keys []string
	for k, at := range x.held {
		if cutoff.IsZero() || !at.After(cutoff) {
			keys = append(keys, k)
			delete(x.held, k)
		}
	}
	x.mu.Unlock()
	for _, k := range keys {
		x.s.changed(k)
	}
}

// tick releases the files held for fsevOpenHold; the source calls it
// periodically.
func (x *fsevTranslator) tick(now time.Time) {
	x.release(now.Add(-fsevOpenHold))
}

// holding reports how many files are held (tests, and the source's
// decision to tick).
func (x *fsevTranslator) holding() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.held)
}
