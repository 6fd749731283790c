package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// A project's watcher keeps its lock, its state and the sync cookies in
// <project>/.vrift/watch/, which no walk records and no watch reports
// except the cookies' creation:
//
//	lock          flock'ed by the watcher as long as it runs
//	state.json    pid, since, backlog: what `vrift status` shows
//	cookie-*      made by `vrift watch --sync`, removed by the watcher once
//	              everything evented before it is committed
//	cookie-*.err  beside it, the error of a commit that failed
const (
	watchDirName = "watch"
	lockName     = "lock"
	stateName    = "state.json"
	cookiePrefix = "cookie-"
	// selfCookiePrefix marks the end of a projection's own events.
	selfCookiePrefix = "self-"
	errSuffix        = ".err"
)

// ErrWatched refuses a second watcher on a project (errdefs.ErrBusy).
var ErrWatched = fmt.Errorf("%w: a watcher already holds the project", errdefs.ErrBusy)

// ErrNoWatcher is returned by Sync when no watcher runs for the project
// (errdefs.ErrNotFound).
var ErrNoWatcher = fmt.Errorf("%w: no watcher runs for the project", errdefs.ErrNotFound)

// State is what a running watcher publishes about itself.
type State struct {
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Dir     string    `json:"dir"`
	Mode    string    `json:"mode"`
	Backlog int       `json:"backlog"`
	Busy    int       `json:"busy"`
	Files   int64     `json:"files"`
	Bytes   int64     `json:"bytes"`
	Error   string    `json:"error,omitempty"`
	// Starting is set until the start-up scan is committed.
	Starting bool `json:"starting,omitempty"`
}

// Lock is a project's watcher lock, held by the running watcher.
type Lock struct {
	dirPath string
	dirFD   int
	lockFD  int
}

// openWatchDir opens (creating, if create) <root>/.vrift/watch by
// descriptor, following no symlink: root may run vrift in a user's tree.
func openWatchDir(root string, create bool) (string, int, error) {
	t, err := tree.Open(root)
	if err != nil {
		return "", -1, err
	}
	defer t.Close()
	fd := t.FD()
	path := root
	for _, name := range []string{manifest.DirName, watchDirName} {
		path += "/" + name
		if create {
			if err := unix.Mkdirat(fd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return "", -1, fmt.Errorf("mkdir %s: %w", path, err)
			}
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if fd != t.FD() {
			unix.Close(fd)
		}
		if err != nil {
			return "", -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		fd = nfd
	}
	return path, fd, nil
}

// TakeLock takes the watcher lock of the project at root, or refuses with
// ErrWatched naming the holder.
func TakeLock(root string) (*Lock, error) {
	path, dfd, err := openWatchDir(root, true)
	if err != nil {
		return nil, err
	}
	lfd, err := unix.Openat(dfd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		unix.Close(dfd)
		return nil, fmt.Errorf("open %s/%s: %w", path, lockName, err)
	}
	if err := unix.Flock(lfd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(lfd)
		defer unix.Close(dfd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			if st, ok := readState(dfd); ok {
				return nil, fmt.Errorf("%w %s (pid %d, since %s)", ErrWatched, root, st.PID, st.Since.Local().Format(time.DateTime))
			}
			return nil, fmt.Errorf("%w %s", ErrWatched, root)
		}
		return nil, fmt.Errorf("lock %s/%s: %w", path, lockName, err)
	}
	l := &Lock{dirPath: path, dirFD: dfd, lockFD: lfd}
	// Errors nobody read (their syncer gave up or died).
	for _, n := range l.names() {
		if strings.HasPrefix(n, cookiePrefix) && strings.HasSuffix(n, errSuffix) {
			unix.Unlinkat(dfd, n, 0)
		}
	}
	return l, nil
}

// names lists the watch directory.
func (l *Lock) names() []string {
	nfd, err := unix.Dup(l.dirFD)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(nfd), l.dirPath)
	defer d.Close()
	unix.Seek(nfd, 0, 0)
	names, _ := d.Readdirnames(-1)
	return names
}

// cookies lists the sync cookies waiting in the watch directory.
func (l *Lock) cookies() []string {
	var out []string
	for _, n := range l.names() {
		if strings.HasPrefix(n, cookiePrefix) && !strings.HasSuffix(n, errSuffix) {
			out = append(out, n)
		}
	}
	return out
}

// Release drops the lock and the state.
func (l *Lock) Release() {
	unix.Unlinkat(l.dirFD, stateName, 0)
	unix.Close(l.lockFD)
	unix.Close(l.dirFD)
}

// WriteState publishes st (atomically: a reader sees the old or the new).
func (l *Lock) WriteState(st State) {
	b, _ := json.Marshal(st)
	writeAt(l.dirFD, stateName, b)
}

// writeAt replaces name in the directory dfd by data, through a temp name
// and a rename. Not fsynced: what it writes is advisory and rewritten.
func writeAt(dfd int, name string, data []byte) error {
	tmp := "." + name + "." + strconv.Itoa(os.Getpid())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, data)
	unix.Close(fd)
	if err == nil {
		err = unix.Renameat(dfd, tmp, dfd, name)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
	}
	return err
}

// createAt makes the empty file name in dfd: a cookie, seen by the
// watcher as its IN_CREATE.
func createAt(dfd int, name string) error {
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func readState(dfd int) (State, bool) {
	fd, err := unix.Openat(dfd, stateName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return State{}, false
	}
	f := os.NewFile(uintptr(fd), stateName)
	defer f.Close()
	var st State
	if json.NewDecoder(f).Decode(&st) != nil {
		return State{}, false
	}
	return st, true
}

// held reports whether a watcher holds the lock in dfd.
func held(dfd int) bool {
	lfd, err := unix.Openat(dfd, lockName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(lfd)
	if err := unix.Flock(lfd, unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(lfd, unix.LOCK_UN)
	return false
}

// Status tells whether a watcher holds the project of dir, and its state.
func Status(dir string) (State, bool, error) {
	_, root, _, _, err := engine.Target(dir, "")
	if err != nil {
		return State{}, false, err
	}
	_, dfd, err := openWatchDir(root, false)
	if err != nil {
		return State{}, false, nil // never watched
	}
	defer unix.Close(dfd)
	if !held(dfd) {
		return State{}, false, nil
	}
	st, ok := readState(dfd)
	if !ok || !alive(st.PID) {
		// Held, but the state is missing or a dead watcher's (killed
		// before its Release): the holder has taken the lock and not yet
		// published its own, so its start-up scan has not begun. Read as
		// finished, a test once wrote a file the scan then stored.
		st = State{Starting: true}
	}
	return st, true, nil
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Sync returns once the watcher of dir's project has stored and committed
// everything closed before the call: it makes a cookie file the watcher
// sees in its own event stream, after every earlier event, and waits for
// the watcher to remove it. ErrNoWatcher when no watcher runs.
func Sync(ctx context.Context, dir string) error {
	_, root, _, _, err := engine.Target(dir, "")
	if err != nil {
		return err
	}
	_, dfd, err := openWatchDir(root, false)
	if err != nil || !held(dfd) {
		if err == nil {
			unix.Close(dfd)
		}
		return fmt.Errorf("%w %s: start one with `vrift watch %s`", ErrNoWatcher, root, root)
	}
	defer unix.Close(dfd)
	name := fmt.Sprintf("%s%d-%d", cookiePrefix, os.Getpid(), time.Now().UnixNano())
	if err := createAt(dfd, name); err != nil {
		return fmt.Errorf("sync with the watcher of %s: %w", root, err)
	}
	defer unix.Unlinkat(dfd, name+errSuffix, 0)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
			break
		}
		if i%20 == 19 && !held(dfd) {
			unix.Unlinkat(dfd, name, 0)
			return fmt.Errorf("sync with the watcher of %s: the watcher stopped before answering", root)
		}
		select {
		case <-ctx.Done():
			unix.Unlinkat(dfd, name, 0)
			return ctx.Err()
		case <-tick.C:
		}
	}
	efd, err := unix.Openat(dfd, name+errSuffix, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	buf := make([]byte, 4096)
	n, _ := unix.Read(efd, buf)
	unix.Close(efd)
	return fmt.Errorf("sync with the watcher of %s: its commit failed: %s", root, buf[:max(n, 0)])
}
