package watch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/manifest"
)

// treeMask is what each watched directory reports. IN_CLOSE_WRITE is the
// writer's close (the spec's trigger); creates, moves and deletes keep the
// tree's shape; IN_ATTRIB catches chmod and touch, which an ingest records
// too. IN_EXCL_UNLINK stops events of files already unlinked (a writer's
// temp it deleted) and IN_ONLYDIR refuses a watch on anything but a
// directory (one swapped for a file in between).
const treeMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_CREATE |
	unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ATTRIB |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// inotify is the Linux event source: one watch per directory of the
// watched subtree, plus one on the cookie directory. It holds, per watched
// directory, its watch descriptor and key: about 100 bytes a directory,
// nothing per file.
type inotify struct {
	fd  int
	f   *os.File
	w   *Watcher
	mu  sync.Mutex
	wds map[int32]string // watch descriptor -> directory key
	// byKey is the reverse of wds, for dropping a moved-out subtree.
	byKey  map[string]int32
	cookie int32
}

func newSource(w *Watcher) (source, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.EMFILE) {
			return nil, fmt.Errorf("inotify: too many instances for this user (fs.inotify.max_user_instances = %s): "+
				"raise it, e.g. sysctl fs.inotify.max_user_instances=1024", sysctl("max_user_instances"))
		}
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// Non-blocking, so the runtime's poller waits for it and Close wakes
	// a pending Read.
	s := &inotify{fd: fd, f: os.NewFile(uintptr(fd), "inotify"), w: w,
		wds: map[int32]string{}, byKey: map[string]int32{}, cookie: -1}
	wd, err := unix.InotifyAddWatch(fd, fdPath(w.lock.dirFD), unix.IN_CREATE|unix.IN_ONLYDIR)
	if err != nil {
		s.f.Close()
		return nil, fmt.Errorf("watch %s: %w", w.lock.dirPath, err)
	}
	s.cookie = int32(wd)
	return s, nil
}

func (s *inotify) Close() error { return s.f.Close() }

// errWatchLimit marks a directory that could not be watched because the
// user's inotify watches are used up.
var errWatchLimit = errors.New("inotify watch limit reached")

func watchLimitError() error {
	return fmt.Errorf("%w (fs.inotify.max_user_watches = %s, one per directory): raise it, "+
		"e.g. sysctl fs.inotify.max_user_watches=1048576", errWatchLimit, sysctl("max_user_watches"))
}

func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/fs/inotify/" + name)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// AddTree watches the directory key and every directory below it, each
// before it is listed, so nothing made in it between its creation and its
// watch goes unseen: it is either in the listing or evented. Directories
// it could not watch for want of watches are returned (and reported).
func (s *inotify) AddTree(key string) error {
	fd, err := s.w.t.OpenDir(key)
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("open dir %s: %w", s.w.abs(key), err)
	}
	return s.addTree(fd, key)
}

// watched reports whether the directory key has a watch.
func (s *inotify) watched(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byKey[key]
	return ok
}

func (s *inotify) addTree(fd int, key string) error {
	d := os.NewFile(uintptr(fd), key)
	defer d.Close()
	wd, err := unix.InotifyAddWatch(s.fd, fdPath(fd), treeMask)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return watchLimitError()
		}
		if gone(err) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("watch %s: %w", s.w.abs(key), err)
	}
	s.mu.Lock()
	if old, ok := s.byKey[key]; ok && old != int32(wd) {
		delete(s.wds, old)
	}
	s.wds[int32(wd)] = key // a directory moved within the tree keeps its wd
	s.byKey[key] = int32(wd)
	s.mu.Unlock()
	ents, err := d.ReadDir(-1)
	if err != nil {
		if gone(err) {
			return nil
		}
		return fmt.Errorf("read dir %s: %w", s.w.abs(key), err)
	}
	var limit error
	for _, e := range ents {
		if !e.IsDir() || engine.Unrecorded(e.Name()) {
			continue
		}
		child := manifest.Join(key, e.Name())
		cfd, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if gone(err) || errors.Is(err, unix.ELOOP) {
				continue // gone, or a symlink now: not ours to watch
			}
			// Unreadable for now (cp -a makes a directory 0700 until
			// it is filled): rescanned until it can be watched.
			s.w.unwatched(child, fmt.Errorf("open dir %s: %w", s.w.abs(child), err))
			continue
		}
		if err := s.addTree(cfd, child); err != nil {
			if !errors.Is(err, errWatchLimit) {
				return err
			}
			s.w.unwatched(child, err)
			limit = err
		}
	}
	return limit
}

// dropTree forgets the watches of key and everything below it (a
// directory moved out or deleted); the kernel drops a deleted one's itself.
func (s *inotify) dropTree(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, wd := range s.byKey {
		if manifest.Within(k, key) {
			unix.InotifyRmWatch(s.fd, uint32(wd))
			delete(s.byKey, k)
			delete(s.wds, wd)
		}
	}
}

// eventCoalesce is how long Run waits after a read that did not fill half
// its buffer, so that the next read takes a batch of events rather than
// the few a busy writer made since. Without it the reader woke about once
// for every two files an untar wrote (16,000 reads for 50,000 events; with
// it, fewer than 1,000), and a wake-up is dear on this VM (a context
// switch each). Measured on the npm fixture's untar (26k files) on
// a journaled ext4, 5 alternated rounds: the untar while watched took
// 1.30-1.51 s against 1.59-1.94 s, the watcher 3.4-3.9 CPU-s against
// 3.7-4.0, and the untar plus --sync 3.97-4.37 s against 4.20-4.51 s
// (50 ms did no better). It adds at most that much to the lag from a
// close to its commit: BenchmarkCommitLag's median went from 79 to 98 ms,
// its 99th percentile was 174-176 ms against 179-185. The kernel queues
// 16,384 events by default, and that untar made about 23 a millisecond
// (40,000 in its first 1.76 s): 20 ms of it is 3% of the queue. An
// overflow is rescanned anyway.
const eventCoalesce = 20 * time.Millisecond

// Run reads events until Close, feeding the watcher.
func (s *inotify) Run() error {
	buf := make([]byte, 64<<10)
	for {
		if s.w.beforeRead != nil {
			s.w.beforeRead()
		}
		n, err := s.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read inotify events: %w", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			name := strings.TrimRight(string(nameBytes), "\x00")
			if err := s.handle(ev.Wd, ev.Mask, name); err != nil {
				return err
			}
		}
		if n < len(buf)/2 {
			time.Sleep(eventCoalesce)
		}
	}
}

func (s *inotify) handle(wd int32, mask uint32, name string) error {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		s.w.overflowed()
		return nil
	}
	if wd == s.cookie {
		switch {
		case mask&unix.IN_CREATE == 0:
		case strings.HasPrefix(name, selfCookiePrefix):
			s.w.ownEventsEnd(name)
		case strings.HasPrefix(name, cookiePrefix):
			s.w.barrier(name)
		}
		return nil
	}
	s.mu.Lock()
	dir, ok := s.wds[wd]
	s.mu.Unlock()
	if !ok {
		return nil // a watch dropped since: its events are stale
	}
	if mask&unix.IN_IGNORED != 0 {
		s.mu.Lock()
		if s.byKey[dir] == wd {
			delete(s.byKey, dir)
		}
		delete(s.wds, wd)
		s.mu.Unlock()
		return nil
	}
	if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
		if dir == s.w.subtree {
			return fmt.Errorf("%s was %s: nothing left to watch", s.w.dir, map[bool]string{true: "deleted", false: "moved"}[mask&unix.IN_DELETE_SELF != 0])
		}
		return nil // its parent reports it under its name
	}
	if name == "" || engine.Unrecorded(name) {
		return nil
	}
	key := manifest.Join(dir, name)
	// While the watcher projects, what a projection makes (a file renamed
	// over, a directory's times put back) waits to be told apart from
	// the user's changes (ownEventsEnd).
	if mask&(unix.IN_MOVED_TO|unix.IN_ATTRIB) != 0 && mask&unix.IN_CREATE == 0 && s.w.holdOwn(key, mask&unix.IN_ISDIR != 0) {
		return nil
	}
	if mask&unix.IN_ISDIR != 0 {
		switch {
		case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 || (mask&unix.IN_ATTRIB != 0 && !s.watched(key)):
			// Watched before the refresh lists it (and one that could
			// not be opened is tried again once its mode changes).
			if err := s.AddTree(key); err != nil {
				s.w.unwatched(key, err)
			}
		case mask&(unix.IN_MOVED_FROM|unix.IN_DELETE) != 0:
			s.dropTree(key)
		}
	}
	s.w.changed(key)
	return nil
}

func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// fdPath names an open directory for the calls that take a path: the
// directory itself, whatever has been renamed above it since.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
