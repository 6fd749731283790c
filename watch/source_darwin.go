//go:build darwin

package watch

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsevents"
	"golang.org/x/sys/unix"
)

// The macOS event source: one FSEvents stream, through
// github.com/fsnotify/fsevents (the fsnotify project's cgo binding of
// CoreServices' FSEventStream, on a dispatch queue, no run loop thread of
// our own). What its events mean is fsevents.go's, shared with every
// system and tested on Linux; this file only starts and stops the stream
// and feeds the batches in. None of it has been run on a Mac: it is
// compiled and vetted for darwin (scripts/darwin-check.sh).
//
// Why that binding: it is the fsnotify project's, exposes the stream's
// create flags (FileEvents, WatchRoot) and every event flag, and delivers
// each callback's batch whole and in order, on a dispatch queue. Its
// README calls it not well maintained (v0.2.0, May 2024), but it is small
// (one cgo file) and the alternative was the same cgo of our own. Known
// limits, handled here: its callback blocks on an unbuffered channel send
// (we pass a buffered one, and keep draining it until Stop returns), and
// a callback that races Stop may log one line to stderr.

// fseventsLatency is how long fseventsd gathers events before it delivers
// a batch (FSEventStreamCreate's latency; watchman uses 10 ms). It adds to
// the lag from a close to its commit (Options.Quiet after the last event,
// commits every 250 ms), so 50 ms keeps that lag about where Linux's is;
// not measured on a Mac.
const fseventsLatency = 50 * time.Millisecond

// Our copies of Apple's flag values (fsevents.go, built on every system)
// must be the binding's, which cgo reads from the SDK's FSEvents.h: each
// line fails to compile (a negative constant) if they differ.
const (
	_ = -uint(uint32(fsevents.MustScanSubDirs) ^ fsevMustScanSubDirs)
	_ = -uint(uint32(fsevents.UserDropped) ^ fsevUserDropped)
	_ = -uint(uint32(fsevents.KernelDropped) ^ fsevKernelDropped)
	_ = -uint(uint32(fsevents.EventIDsWrapped) ^ fsevEventIDsWrapped)
	_ = -uint(uint32(fsevents.HistoryDone) ^ fsevHistoryDone)
	_ = -uint(uint32(fsevents.RootChanged) ^ fsevRootChanged)
	_ = -uint(uint32(fsevents.Mount) ^ fsevMount)
	_ = -uint(uint32(fsevents.Unmount) ^ fsevUnmount)
	_ = -uint(uint32(fsevents.ItemCreated) ^ fsevItemCreated)
	_ = -uint(uint32(fsevents.ItemRemoved) ^ fsevItemRemoved)
	_ = -uint(uint32(fsevents.ItemInodeMetaMod) ^ fsevItemInodeMetaMod)
	_ = -uint(uint32(fsevents.ItemRenamed) ^ fsevItemRenamed)
	_ = -uint(uint32(fsevents.ItemModified) ^ fsevItemModified)
	_ = -uint(uint32(fsevents.ItemFinderInfoMod) ^ fsevItemFinderInfo)
	_ = -uint(uint32(fsevents.ItemChangeOwner) ^ fsevItemChangeOwner)
	_ = -uint(uint32(fsevents.ItemXattrMod) ^ fsevItemXattrMod)
	_ = -uint(uint32(fsevents.ItemIsFile) ^ fsevItemIsFile)
	_ = -uint(uint32(fsevents.ItemIsDir) ^ fsevItemIsDir)
	_ = -uint(uint32(fsevents.ItemIsSymlink) ^ fsevItemIsSymlink)
	_ = -uint(uint32(fsevents.FileEvents) ^ 0x10)
	_ = -uint(uint32(fsevents.WatchRoot) ^ 0x04)
)

// errWatchLimit is inotify's; an FSEvents stream watches two paths here
// (its limit is 4,096 paths, not directories), so it is never returned.
var errWatchLimit = errors.New("watch limit reached")

type fsevSource struct {
	w  *Watcher
	x  *fsevTranslator
	es *fsevents.EventStream
	// ids are the device and inode of each spelling of the roots, for
	// RootChanged (rootStill).
	ids map[string][2]uint64

	stopping atomic.Bool
	done     chan struct{} // closed by Close
	pumped   chan struct{} // closed when the pump has returned
	failed   chan struct{} // closed when the translator ended the source
	err      error         // set before failed is closed
	once     sync.Once
}

// newSource starts the stream at once, as inotify sets its cookie watch
// in newSource: a sync cookie made after Run lists the cookie directory is
// then in the stream. The tree's events before AddTree are covered by the
// start-up scan that follows.
func newSource(w *Watcher) (source, error) {
	s := &fsevSource{w: w, ids: map[string][2]uint64{},
		done: make(chan struct{}), pumped: make(chan struct{}), failed: make(chan struct{})}
	tree, err := s.spellings(w.dir)
	if err != nil {
		return nil, err
	}
	cookies, err := s.spellings(w.lock.dirPath)
	if err != nil {
		return nil, err
	}
	s.x = newFSEvTranslator(w, tree, cookies, w.subtree, s.rootStill)
	// The resolved paths: FSEvents reports those. The watch directory
	// is named apart only when it is outside the watched one (a
	// subtree of the project is watched); within it, one root covers
	// both, and no event comes twice.
	paths := []string{tree[len(tree)-1]}
	if _, within := tree.rel(cookies[len(cookies)-1]); !within {
		paths = append(paths, cookies[len(cookies)-1])
	}
	s.es = &fsevents.EventStream{Paths: paths, Latency: fseventsLatency,
		Flags:  fsevents.FileEvents | fsevents.WatchRoot,
		Events: make(chan []fsevents.Event, 64)}
	if err := s.es.Start(); err != nil {
		return nil, fmt.Errorf("FSEvents stream on %s: %w", w.dir, err)
	}
	go s.pump()
	return s, nil
}

// spellings returns path as given and, if it differs, as resolved (last),
// recording each one's identity.
func (s *fsevSource) spellings(path string) (fsevRoot, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	r := fsevRoot{path}
	if resolved != path {
		r = append(r, resolved)
	}
	for _, p := range r {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
		s.ids[p] = [2]uint64{uint64(st.Dev), st.Ino}
	}
	return r, nil
}

// rootStill reports whether path still names the directory it named when
// the stream started.
func (s *fsevSource) rootStill(path string) bool {
	id, ok := s.ids[path]
	if !ok {
		return false
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return false
	}
	return id == [2]uint64{uint64(st.Dev), st.Ino}
}

// pump feeds the stream's batches to the translator, and releases the
// files held for their first write as they come due.
func (s *fsevSource) pump() {
	defer close(s.pumped)
	tick := time.NewTicker(fsevOpenHold / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
			if s.x.holding() > 0 && !s.stopping.Load() {
				s.x.tick(time.Now())
			}
		case batch := <-s.es.Events:
			// Drained even once stopping or failed, so that a callback
			// never blocks the stream's queue while Stop waits for it.
			if s.stopping.Load() || s.err != nil {
				continue
			}
			if s.w.beforeRead != nil {
				s.w.beforeRead()
			}
			evs := make([]fsevEvent, len(batch))
			for i, e := range batch {
				evs[i] = fsevEvent{Path: e.Path, Flags: uint32(e.Flags)}
			}
			if err := s.x.handle(evs, time.Now()); err != nil {
				s.err = err
				close(s.failed)
			}
		}
	}
}

// AddTree: the stream is recursive and already started.
func (s *fsevSource) AddTree(string) error { return nil }

// Run waits until Close, or until the watched directory is gone.
func (s *fsevSource) Run() error {
	select {
	case <-s.failed:
		return s.err
	case <-s.done:
		return nil
	}
}

// Close stops the stream; the pump drains its queue meanwhile.
func (s *fsevSource) Close() error {
	s.once.Do(func() {
		s.stopping.Store(true)
		s.es.Stop()
		close(s.done)
		<-s.pumped
	})
	return nil
}
