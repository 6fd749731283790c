package fs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vrift/vrift/errdefs"
)

// FSType is the filesystem type vrift views show in mount tables.
const FSType = "fuse.vrift"

// Mount is one vrift view in the mount table.
type Mount struct {
	Mountpoint string `json:"mountpoint"`
	// Source is the view's manifest (and subtree), as given at mount time.
	Source string `json:"source"`
	// Stale is set when the serving process is gone: the kernel answers
	// ENOTCONN for the mountpoint.
	Stale bool `json:"stale"`
	// Reads says how file content is served: "passthrough" (the kernel
	// reads blobs directly) or "fuse" (through the server); empty when
	// the server left no note (another user's mount).
	Reads string `json:"reads,omitempty"`
}

// readsNote is where a server notes how its mount serves reads, for
// status: a small file per mountpoint in the user's temp directory.
func readsNote(mountpoint string) string {
	sum := fnv.New64a()
	sum.Write([]byte(mountpoint))
	return filepath.Join(os.TempDir(), "vrift-"+strconv.Itoa(os.Getuid()), "mounts", strconv.FormatUint(sum.Sum64(), 16))
}

func writeReadsNote(mountpoint, reads string) {
	p := readsNote(mountpoint)
	if os.MkdirAll(filepath.Dir(p), 0o700) == nil {
		os.WriteFile(p, []byte(reads), 0o600)
	}
}

// readReadsNote is the server's note on how mountpoint serves reads, or ""
// when it left none.
func readReadsNote(mountpoint string) string {
	b, err := os.ReadFile(readsNote(mountpoint))
	if err != nil {
		return ""
	}
	return string(b)
}

// IsStale reports whether path is a FUSE mount whose server is gone. It
// asks with statfs, which always reaches the server: a stat could be
// answered from the kernel's attribute cache.
func IsStale(path string) bool {
	var st syscall.Statfs_t
	return errors.Is(syscall.Statfs(path, &st), syscall.ENOTCONN)
}

// tableEntry is one line of the mount table, any filesystem.
type tableEntry struct {
	Mountpoint, FSType, Source string
	// Owner is the uid that mounted a FUSE filesystem, -1 when unknown.
	Owner int
}

// Mounts lists the vrift views in the mount table (this mount namespace on
// Linux, the machine on macOS).
func Mounts() ([]Mount, error) {
	table, err := mountTable()
	if err != nil {
		return nil, err
	}
	var out []Mount
	for _, e := range table {
		if src, ok := viewSource(e); ok {
			out = append(out, Mount{Mountpoint: e.Mountpoint, Source: src,
				Stale: IsStale(e.Mountpoint), Reads: readReadsNote(e.Mountpoint)})
		}
	}
	return out, nil
}

var (
	// ErrNotMounted: Unmount's path is not a mount point.
	ErrNotMounted = errors.New("not a mount point")
	// ErrNotView: Unmount's path is a mount point, but not a vrift view;
	// vrift leaves other mounts alone (root could take down any of them).
	ErrNotView = errors.New("not a vrift mount")
)

// Unmount detaches the vrift view at mp, also one whose server is gone:
// umount2 as root (lazily or forcibly if busy), the platform's helper
// otherwise. It first looks mp up in the mount table itself, so whoever runs
// it, a path that is not a view gets the same answer (ErrNotMounted,
// ErrNotView) rather than root's EINVAL or the helper's own words.
func Unmount(mp string) error {
	var st syscall.Stat_t
	err := syscall.Lstat(mp, &st)
	if err != nil && !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.EACCES) {
		// ENOTCONN is a stale view's root, EACCES another user's view
		// (no allow_other): the table still has both. The caller names
		// mp: the errno alone reads "umount P: no such file or directory".
		return err
	} else if err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		// The table has real paths, and a symlink in a tree someone else
		// controls must not steer root's unmount elsewhere.
		return errors.New("a symlink: name the mount point itself")
	}
	real, err := tablePath(mp)
	if err != nil {
		return err
	}
	table, err := mountTable()
	if err != nil {
		return fmt.Errorf("read the mount table: %w", err)
	}
	var at *tableEntry
	for i := range table {
		if table[i].Mountpoint == real {
			at = &table[i] // the last is the one on top
		}
	}
	switch {
	case at == nil:
		return ErrNotMounted
	case !isView(*at):
		return fmt.Errorf("%w (%s, %s): use umount(8)", ErrNotView, at.FSType, at.Source)
	}
	if err := refuseOthers(*at, os.Geteuid()); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		err := syscall.Unmount(real, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = detach(real)
		}
		if errors.Is(err, syscall.EINVAL) {
			return ErrNotMounted // gone since the table was read
		}
		return err
	}
	return userUnmount(real)
}

// refuseOthers refuses an ordinary user another user's view, saying whose it
// is: fusermount3 would only say it found no entry for the path.
func refuseOthers(e tableEntry, euid int) error {
	if euid != 0 && e.Owner >= 0 && e.Owner != euid {
		return fmt.Errorf("mounted by uid %d: only they or root can unmount it: %w", e.Owner, errdefs.ErrPermission)
	}
	return nil
}

func isView(e tableEntry) bool {
	_, ok := viewSource(e)
	return ok
}

// tablePath is mp as the mount table names it: absolute, with symlinks in
// its parent resolved (macOS's /tmp is /private/tmp). mp itself is not
// resolved: a stale view's root cannot be stat'ed.
func tablePath(mp string) (string, error) {
	abs, err := filepath.Abs(mp)
	if err != nil {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}

// helperError is a failed unmount helper's complaint, named once: the
// helpers start their messages with their own name ("fusermount3: entry
// for ... not found"), which wrapping would repeat.
func helperError(name string, out []byte, err error) error {
	msg := strings.TrimSpace(string(out))
	msg = strings.TrimPrefix(msg, name+": ")
	if msg == "" {
		return fmt.Errorf("%s: %w", name, err)
	}
	return fmt.Errorf("%s: %s", name, msg)
}
