// Package tree works inside a directory tree by descriptor. Every path below
// the tree's root is resolved without following a symlink and without leaving
// the root, and every change is made relative to a directory descriptor, so a
// tree that another user controls cannot steer an operation outside itself:
// a directory swapped for a symlink mid-run makes the operation fail
// (ELOOP/EXDEV) instead of redirecting a rename, chmod or unlink run as root.
package tree

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrOtherOwner is returned (wrapped) when a tree belongs to another user and
// the caller did not allow that explicitly.
var ErrOtherOwner = errors.New("owned by another user")

// Tree is an open directory whose descendants are reached by descriptor.
type Tree struct {
	fd   int
	path string
	st   unix.Stat_t
}

// Open opens the directory at dir. dir itself is resolved as given (the
// caller named it, symlinks and all); nothing below it is.
func Open(dir string) (*Tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	t := &Tree{fd: fd, path: dir}
	if err := unix.Fstat(fd, &t.st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	return t, nil
}

// Close releases the root descriptor.
func (t *Tree) Close() error { return unix.Close(t.fd) }

// Path is the root's path as given to Open.
func (t *Tree) Path() string { return t.path }

// FD is the root's descriptor.
func (t *Tree) FD() int { return t.fd }

// Owner is the uid owning the root directory.
func (t *Tree) Owner() uint32 { return t.st.Uid }

// CheckOwner refuses a tree the calling user does not own unless allow is
// set: like git's safe.directory, vrift does not act in a tree another user
// controls (root running vrift in a user's checkout is the case that
// matters) without being told to.
func (t *Tree) CheckOwner(allow bool) error {
	return CheckOwner(t.path, t.st.Uid, allow)
}

// CheckOwner is Tree.CheckOwner for a path already stat'ed.
func CheckOwner(p string, uid uint32, allow bool) error {
	if allow || uid == uint32(unix.Geteuid()) {
		return nil
	}
	return fmt.Errorf("%s is %w (uid %d): vrift does not act in a tree another user controls; "+
		"pass --allow-other-owner (or set VRIFT_ALLOW_OTHER_OWNER=1) to proceed, with special bits masked "+
		"and every change confined to the tree", p, ErrOtherOwner, uid)
}

// clean checks a slash-separated path relative to the root. "", "." and "/"
// name the root itself.
func clean(rel string) (string, error) {
	if rel == "" || rel == "." || rel == "/" {
		return ".", nil
	}
	c := path.Clean(rel)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q: %w", rel, errOutside)
	}
	return c, nil
}

var errOutside = errors.New("path leaves the tree")

// OpenDir opens the directory rel below the root for reading (and fchmod,
// fchown, futimens), following no symlink on the way.
func (t *Tree) OpenDir(rel string) (int, error) {
	return t.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

// OpenFile opens rel below the root with flags (O_NOFOLLOW and O_CLOEXEC are
// added), following no symlink on the way.
func (t *Tree) OpenFile(rel string, flags int) (int, error) {
	return t.open(rel, flags|unix.O_NOFOLLOW)
}

func (t *Tree) open(rel string, flags int) (int, error) {
	c, err := clean(rel)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	if c == "." {
		fd, err := unix.Openat(t.fd, ".", flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: t.path, Err: err}
		}
		return fd, nil
	}
	fd, err := openBeneath(t.fd, c, flags|unix.O_CLOEXEC)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: t.path + "/" + c, Err: err}
	}
	return fd, nil
}

// Dirs keeps the last parent directory opened, for a worker that handles
// paths in key order: consecutive paths mostly share their parent, so this
// costs about one open per directory instead of one per file.
type Dirs struct {
	t   *Tree
	rel string
	fd  int
}

// NewDirs starts an empty cache on t.
func (t *Tree) NewDirs() *Dirs { return &Dirs{t: t, fd: -1} }

// Get returns a descriptor of the directory rel, valid until the next Get or
// Close.
func (d *Dirs) Get(rel string) (int, error) {
	if d.fd >= 0 && d.rel == rel {
		return d.fd, nil
	}
	d.Close()
	fd, err := d.t.OpenDir(rel)
	if err != nil {
		return -1, err
	}
	d.fd, d.rel = fd, rel
	return fd, nil
}

// Close releases the cached descriptor.
func (d *Dirs) Close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// Split returns the parent directory and base name of a slash-separated
// relative path ("." for a top-level name).
func Split(rel string) (dir, name string) {
	dir, name = path.Split(rel)
	if dir == "" {
		return ".", name
	}
	return strings.TrimSuffix(dir, "/"), name
}

// NameMax is the longest file name Linux and macOS filesystems take.
const NameMax = 255

// Every temporary name vrift makes inside a user's tree starts with one of
// these prefixes, and IsTemp is the one rule that recognises them: a temp
// left by a killed run is vrift's, never the project's, so no ingest
// records it. Each writer keeps its own prefix, so that a link and an
// ingest replacing the same name at once never take over each other's
// temp.
const (
	// LinkTempPrefix: vrift link's replacements (fs.Link).
	LinkTempPrefix = ".vrift-tmp-"
	// SwapTempPrefix: an ingest's in-place swaps and adoptions (engine).
	SwapTempPrefix = ".vrift-swap-"
)

// IsTemp reports whether name is one of vrift's temporary names.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, LinkTempPrefix) || strings.HasPrefix(name, SwapTempPrefix)
}

// TempName is the temporary name a replacement of name is made under:
// prefix+name, or, where that would pass NAME_MAX, prefix followed by a
// digest of name. The name is a function of prefix and name only, so a
// temp left by an interrupted run is found and replaced by the next one.
func TempName(prefix, name string) string {
	if len(prefix)+len(name) <= NameMax {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:16])
}

// Replace makes a new version of name in the directory dirfd under a
// temporary name (TempName(prefix, name)) with make, then renames it over
// name, so that name is never missing or half-written. A temp left by an
// interrupted run is removed and made again.
func Replace(dirfd int, name, prefix string, make func(dirfd int, tmp string) error) error {
	tmp := TempName(prefix, name)
	err := make(dirfd, tmp)
	if errors.Is(err, unix.EEXIST) || errors.Is(err, fs.ErrExist) {
		unix.Unlinkat(dirfd, tmp, 0)
		err = make(dirfd, tmp)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

// Futimens sets the access and modification time of the open fd to ns.
func Futimens(fd int, ns int64) error {
	ts := unix.NsecToTimespec(ns)
	return futimens(fd, &[2]unix.Timespec{ts, ts})
}

// SetMTimeAt sets the modification time of name in dirfd, leaving atime,
// without following a symlink at name.
func SetMTimeAt(dirfd int, name string, ns int64) error {
	ts := []unix.Timespec{{Nsec: utimeOmit}, unix.NsecToTimespec(ns)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// Readlink reads the target of the symlink name in dirfd; size is its
// lstat size, a hint.
func Readlink(dirfd int, name string, size int64) ([]byte, error) {
	for n := max(int(size)+1, 256); ; n *= 2 {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, err
		}
		if got < n {
			return buf[:got], nil
		}
	}
}
