package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// Method is how a regular file is projected.
type Method string

const (
	// Symlink points at the blob: free, but the path resolves into the store.
	Symlink Method = "symlink"
	// Hardlink shares the blob's inode: needs the same filesystem and a
	// store the caller may link to (direct mode).
	Hardlink Method = "hardlink"
	// Reflink clones the blob's extents (FICLONE; clonefile on macOS's
	// APFS): a private copy that costs no space, where the filesystem
	// supports it.
	Reflink Method = "reflink"
	// Copy writes a user-owned copy.
	Copy Method = "copy"
)

// ParseMethod checks a method name.
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case Symlink, Hardlink, Reflink, Copy:
		return m, nil
	}
	return "", fmt.Errorf("unknown link method %q (want symlink, hardlink, reflink or copy)", s)
}

// LinkOptions configure a projection.
type LinkOptions struct {
	// Dest is the directory the manifest's keys are materialized under:
	// the project root to restore in place, or any other directory.
	Dest string
	// Subtree limits the projection to one key and everything below it.
	Subtree string
	Method  Method
	// Force replaces files and symlinks that are not projections.
	Force     bool
	StoreRoot string
	// AllowOtherOwner lets the projection work in a Dest another user
	// owns (refused by default, see tree.CheckOwner). Every change stays
	// confined to Dest either way.
	AllowOtherOwner bool
	// KeepSpecialBits applies the manifest's setuid, setgid and sticky
	// bits. They are masked otherwise, and always when Dest is not the
	// caller's: a manifest is data its author chose, and a projection made
	// by root must not turn it into a setuid-root binary.
	KeepSpecialBits bool
}

// LinkResult reports a projection.
type LinkResult struct {
	Method    Method   `json:"method"`
	Dest      string   `json:"dest"`
	Created   int64    `json:"created"`
	Fixed     int64    `json:"fixed"`
	Unchanged int64    `json:"unchanged"`
	Conflicts []string `json:"conflicts"`
	// SpecialBitsMasked counts entries whose setuid/setgid/sticky bits
	// were not applied.
	SpecialBitsMasked int64 `json:"special_bits_masked,omitempty"`
}

// ErrConflict is returned (wrapped) when paths were left alone because they
// hold something that is not a projection.
var ErrConflict = errors.New("conflicting paths left alone")

// tmpPrefix names temporary files made beside their destination; an
// ingest never records one (tree.IsTemp).
const tmpPrefix = tree.LinkTempPrefix

// Link materializes the manifest's tree (or opts.Subtree) under opts.Dest.
// It is incremental: it creates what is missing, fixes projections that
// differ and leaves what already matches. A path holding something that is
// not a projection is a conflict: it is listed and left alone unless
// opts.Force is set. Every replacement is atomic (temp name, then rename).
//
// Everything below Dest is reached by descriptor without following
// symlinks (package tree): a directory of the tree swapped for a symlink
// makes that path fail, it never redirects a create, chmod or rename.
func Link(ctx context.Context, m *manifest.Manifest, opts LinkOptions) (*LinkResult, error) {
	if opts.Method == "" {
		opts.Method = Symlink
	}
	if opts.Subtree == "" {
		opts.Subtree = manifest.RootPath
	}
	if err := manifest.CheckPath(opts.Subtree); err != nil {
		return nil, fmt.Errorf("link: subtree %w", err)
	}
	dest, err := filepath.Abs(opts.Dest)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	l := &linker{opts: opts, dest: dest, fresh: map[string]bool{},
		res: &LinkResult{Method: opts.Method, Dest: dest, Conflicts: []string{}}}
	err = m.View(func(r *manifest.Reader) error {
		// Refuse a manifest that could write outside dest before touching
		// anything.
		n := 0
		if err := r.Walk(opts.Subtree, func(p string, _ manifest.Entry) error {
			n++
			if err := manifest.CheckPath(p); err != nil {
				return fmt.Errorf("manifest %s: %w", m.Path(), err)
			}
			return nil
		}); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%q is not in manifest %s", opts.Subtree, m.Path())
		}
		if err := l.openDest(); err != nil {
			return err
		}
		return l.walk(ctx, r)
	})
	if l.t != nil {
		defer l.t.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if err := l.finishDirs(); err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if len(l.res.Conflicts) > 0 {
		return l.res, fmt.Errorf("link: %d %w (use --force to replace them)", len(l.res.Conflicts), ErrConflict)
	}
	return l.res, nil
}

// linkWorkers is how many files and symlinks are created at once. Creating
// an inode waits on the disk; several in flight overlap those waits.
const linkWorkers = 8

// leaf is a file or symlink to project.
type leaf struct {
	p string
	e manifest.Entry
	// look is false when the parent was created by this run, so nothing
	// can be there yet.
	look bool
}

// walk projects the tree: directories in order on this goroutine, so that
// a parent always exists before its children, and everything else by a
// pool of workers.
func (l *linker) walk(ctx context.Context, r *manifest.Reader) error {
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan []leaf, linkWorkers)
	for range linkWorkers {
		g.Go(func() error {
			dirs := l.t.NewDirs()
			defer dirs.Close()
			for batch := range work {
				for _, lf := range batch {
					if err := l.project(dirs, lf); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	var batch []leaf
	send := func() error {
		select {
		case work <- batch:
			batch = nil
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	dirs := l.t.NewDirs()
	defer dirs.Close()
	err := r.Walk(l.opts.Subtree, func(p string, e manifest.Entry) error {
		if l.blocked != "" && manifest.Within(p, l.blocked) {
			return nil
		}
		look := !l.fresh[parentKey(p)] || p == l.opts.Subtree
		if e.Kind == manifest.Dir {
			return l.dir(dirs, p, e, look)
		}
		batch = append(batch, leaf{p: p, e: e, look: look})
		if len(batch) < 64 {
			return nil
		}
		return send()
	})
	if err == nil && len(batch) > 0 {
		err = send()
	}
	close(work)
	// A worker's failure cancels the walk: report the failure, not the
	// cancellation.
	if werr := g.Wait(); werr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = werr
	}
	return err
}

// parentKey is the key of p's directory ("" for the root's children).
func parentKey(p string) string {
	if p == manifest.RootPath {
		return ""
	}
	d, _ := tree.Split(p)
	if d == "." {
		return manifest.RootPath
	}
	return d
}

// relOf turns a manifest key into a path relative to the tree's root.
func relOf(p string) string {
	if p == manifest.RootPath {
		return "."
	}
	return p
}

// statAt reports whether name exists in dirfd, filling st.
func statAt(dirfd int, name string, st *unix.Stat_t) (bool, error) {
	switch err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, err
	}
}

type linker struct {
	opts LinkOptions
	dest string
	t    *tree.Tree
	// keepSpecial is set when the manifest's special bits are applied.
	keepSpecial bool
	mu          sync.Mutex // guards res.Conflicts
	res         *LinkResult
	// fresh holds directory keys this run created: their children cannot
	// exist yet, so they are created without a look first.
	fresh map[string]bool
	// blocked is a conflicting directory key whose subtree is skipped.
	blocked string
	dirs    []dirFix
}

type dirFix struct {
	p     string
	mode  uint32
	mtime int64
}

func (l *linker) abs(p string) string {
	if p == manifest.RootPath {
		return l.dest
	}
	return filepath.Join(l.dest, filepath.FromSlash(p))
}

func (l *linker) blob(e manifest.Entry) string {
	return cas.BlobPath(l.opts.StoreRoot, e.Key())
}

// openDest creates dest (the path the caller named) and opens it as the
// tree everything else happens in, then creates the ancestors of the
// subtree below it, by descriptor.
func (l *linker) openDest() error {
	if err := os.MkdirAll(l.dest, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Quote(l.dest), Cause(err))
	}
	t, err := tree.Open(l.dest)
	if err != nil {
		return fmt.Errorf("open %s: %w", Quote(l.dest), Cause(err))
	}
	l.t = t
	if err := t.CheckOwner(l.opts.AllowOtherOwner); err != nil {
		return err
	}
	l.keepSpecial = l.opts.KeepSpecialBits && t.Owner() == uint32(unix.Geteuid())
	if l.opts.Subtree == manifest.RootPath {
		return nil
	}
	parent, _ := tree.Split(l.opts.Subtree)
	if parent == "." {
		return nil
	}
	rel := ""
	for _, name := range strings.Split(parent, "/") {
		fd, err := t.OpenDir(relOf(orRoot(rel)))
		if err != nil {
			return fmt.Errorf("open %s: %w", Quote(l.abs(orRoot(rel))), Cause(err))
		}
		err = unix.Mkdirat(fd, name, 0o755)
		unix.Close(fd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create %s: %w", Quote(l.abs(manifest.Join(orRoot(rel), name))), err)
		}
		rel = manifest.Join(orRoot(rel), name)
	}
	return nil
}

func orRoot(p string) string {
	if p == "" {
		return manifest.RootPath
	}
	return p
}

func (l *linker) conflict(abs, why string) {
	l.mu.Lock()
	l.res.Conflicts = append(l.res.Conflicts, Quote(abs)+": "+why)
	l.mu.Unlock()
}

// mode is the mode a projection of e gets: its permission bits, and its
// special bits only when they are kept.
func (l *linker) mode(e manifest.Entry) uint32 {
	if l.keepSpecial {
		return e.Mode & 0o7777
	}
	if e.Mode&0o7000 != 0 {
		atomic.AddInt64(&l.res.SpecialBitsMasked, 1)
	}
	return e.Mode & 0o777
}

// at is a leaf's place: its parent directory's descriptor and its name.
type at struct {
	dirfd int
	name  string
	abs   string
}

func (l *linker) project(dirs *tree.Dirs, lf leaf) error {
	parent, name := tree.Split(lf.p)
	dfd, err := dirs.Get(parent)
	if err != nil {
		return fmt.Errorf("open %s: %w", Quote(l.abs(orRoot(parentKey(lf.p)))), Cause(err))
	}
	a := at{dirfd: dfd, name: name, abs: l.abs(lf.p)}
	var st unix.Stat_t
	exists := false
	if lf.look {
		if exists, err = statAt(dfd, name, &st); err != nil {
			return fmt.Errorf("stat %s: %w", Quote(a.abs), err)
		}
	}
	switch lf.e.Kind {
	case manifest.File:
		return l.file(a, lf.e, exists, &st)
	case manifest.Symlink:
		return l.symlink(a, lf.e, exists, &st)
	}
	return fmt.Errorf("%s: unknown entry kind %v", Quote(a.abs), lf.e.Kind)
}

func (l *linker) dir(dirs *tree.Dirs, p string, e manifest.Entry, look bool) error {
	abs := l.abs(p)
	var st unix.Stat_t
	exists := p == manifest.RootPath
	if p == manifest.RootPath {
		if err := unix.Fstat(l.t.FD(), &st); err != nil {
			return fmt.Errorf("stat %s: %w", Quote(abs), err)
		}
	}
	var dfd int
	var name string
	if p != manifest.RootPath {
		var parent string
		parent, name = tree.Split(p)
		var err error
		if dfd, err = dirs.Get(parent); err != nil {
			return fmt.Errorf("open %s: %w", Quote(filepath.Dir(abs)), Cause(err))
		}
		if look {
			if exists, err = statAt(dfd, name, &st); err != nil {
				return fmt.Errorf("stat %s: %w", Quote(abs), err)
			}
		}
	}
	if exists {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// Not recorded for finishDirs: a conflict is left alone, and
			// never chmod'ed through (it may be a symlink to anywhere).
			l.conflict(abs, "not a directory")
			l.blocked = p
			return nil
		}
		l.dirs = append(l.dirs, dirFix{p: p, mode: l.mode(e), mtime: e.MTime})
		if st.Mode&0o200 == 0 {
			// Read-only directories (Go's module cache) are made writable
			// while we work and get their mode back at the end.
			if err := l.chmodDir(p, uint32(st.Mode)&0o7777|0o700); err != nil {
				return err
			}
		}
		atomic.AddInt64(&l.res.Unchanged, 1)
		return nil
	}
	if err := unix.Mkdirat(dfd, name, 0o700|e.Mode&0o777); err != nil {
		return fmt.Errorf("mkdir %s: %w", Quote(abs), err)
	}
	l.dirs = append(l.dirs, dirFix{p: p, mode: l.mode(e), mtime: e.MTime})
	l.fresh[p] = true
	atomic.AddInt64(&l.res.Created, 1)
	return nil
}

// chmodDir changes the mode of the directory p through a descriptor opened
// without following symlinks.
func (l *linker) chmodDir(p string, mode uint32) error {
	fd, err := l.t.OpenDir(relOf(p))
	if err != nil {
		return fmt.Errorf("open %s: %w", Quote(l.abs(p)), Cause(err))
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", Quote(l.abs(p)), err)
	}
	return nil
}

// isProjection reports whether the existing path is something vrift made
// and may therefore replace: a symlink into the store, a hardlink of the
// entry's blob, or a copy that still matches the entry.
func (l *linker) isProjection(a at, e manifest.Entry, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		t, err := tree.Readlink(a.dirfd, a.name, st.Size)
		return err == nil && strings.HasPrefix(string(t), filepath.Join(l.opts.StoreRoot, cas.HashDir)+"/")
	case unix.S_IFREG:
		return l.sameInodeAsBlob(e, st) || l.matchesCopy(e, st)
	}
	return false
}

func (l *linker) sameInodeAsBlob(e manifest.Entry, st *unix.Stat_t) bool {
	var bst unix.Stat_t
	return unix.Stat(l.blob(e), &bst) == nil && bst.Ino == st.Ino && bst.Dev == st.Dev
}

func (l *linker) matchesCopy(e manifest.Entry, st *unix.Stat_t) bool {
	return st.Size == e.Size && unix.TimespecToNsec(st.Mtim) == e.MTime &&
		(uint32(st.Mode)&0o7777 == e.Mode || uint32(st.Mode)&0o7777 == e.Mode&0o777)
}

func (l *linker) file(a at, e manifest.Entry, exists bool, st *unix.Stat_t) error {
	if exists {
		if l.upToDate(a, e, st) {
			atomic.AddInt64(&l.res.Unchanged, 1)
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			l.conflict(a.abs, "a directory where the manifest has a file")
			return nil
		}
		if !l.opts.Force && !l.isProjection(a, e, st) {
			l.conflict(a.abs, "exists and is not a projection")
			return nil
		}
	}
	if err := l.place(a, e, exists); err != nil {
		return err
	}
	if exists {
		atomic.AddInt64(&l.res.Fixed, 1)
	} else {
		atomic.AddInt64(&l.res.Created, 1)
	}
	return nil
}

// upToDate reports whether the existing path already is the projection the
// method would make.
func (l *linker) upToDate(a at, e manifest.Entry, st *unix.Stat_t) bool {
	switch l.opts.Method {
	case Symlink:
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			return false
		}
		t, err := tree.Readlink(a.dirfd, a.name, st.Size)
		return err == nil && string(t) == l.blob(e)
	case Hardlink:
		return st.Mode&unix.S_IFMT == unix.S_IFREG && l.sameInodeAsBlob(e, st)
	default:
		return st.Mode&unix.S_IFMT == unix.S_IFREG && l.matchesCopy(e, st) && !l.sameInodeAsBlob(e, st)
	}
}

// place creates the file projection at a, atomically replacing what is
// there when replace is set.
func (l *linker) place(a at, e manifest.Entry, replace bool) error {
	blob := l.blob(e)
	var make func(dirfd int, name string) error
	switch l.opts.Method {
	case Symlink:
		make = func(dirfd int, name string) error { return unix.Symlinkat(blob, dirfd, name) }
	case Hardlink:
		make = func(dirfd int, name string) error {
			err := unix.Linkat(unix.AT_FDCWD, blob, dirfd, name, 0)
			switch {
			case errors.Is(err, unix.EXDEV):
				return fmt.Errorf("hardlink %s: the store is on another filesystem; use --method copy or reflink", Quote(a.abs))
			case errors.Is(err, unix.EPERM):
				return fmt.Errorf("hardlink %s: not permitted (a store owned by another user cannot be hardlinked, see fs.protected_hardlinks); use --method copy", Quote(a.abs))
			case errors.Is(err, unix.ENOENT):
				return missingBlob(a.abs, e)
			}
			return err
		}
	case Copy, Reflink:
		return wrapOp("replace", a.abs, tree.Replace(a.dirfd, a.name, tmpPrefix, func(dirfd int, tmp string) error {
			return l.copyBlob(blob, dirfd, tmp, a.abs, e)
		}))
	default:
		return fmt.Errorf("unknown link method %q", l.opts.Method)
	}
	if !replace {
		return wrapOp(string(l.opts.Method), a.abs, make(a.dirfd, a.name))
	}
	return wrapOp("replace", a.abs, tree.Replace(a.dirfd, a.name, tmpPrefix, make))
}

func missingBlob(abs string, e manifest.Entry) error {
	return fmt.Errorf("%s: blob %s is missing from the store (run vrift verify)", Quote(abs), e.Key().Name())
}

// ErrReflinkUnsupported is returned (wrapped) where the filesystem cannot
// clone extents.
var ErrReflinkUnsupported = errors.New("reflink not supported")

// copyBlob writes a copy (or clone) of blob as tmp in dirfd, with the
// entry's mode (special bits per l.mode) and mtime, set through the new
// file's own descriptor.
func (l *linker) copyBlob(blob string, dirfd int, tmp, abs string, e manifest.Entry) error {
	src, err := os.Open(blob)
	if errors.Is(err, iofs.ErrNotExist) {
		return missingBlob(abs, e)
	} else if err != nil {
		return fmt.Errorf("open blob %s: %w", e.Key().Name(), Cause(err))
	}
	defer src.Close()
	var dst *os.File
	if l.opts.Method == Reflink {
		fd, err := cloneAt(src, dirfd, tmp)
		if errors.Is(err, unix.EEXIST) {
			return err // a temp left by an interrupted run: Replace retries
		} else if err != nil {
			return fmt.Errorf("reflink %s: %w (%v); use --method copy or hardlink", Quote(l.dest), ErrReflinkUnsupported, err)
		}
		dst = os.NewFile(uintptr(fd), tmp)
		defer dst.Close()
	} else {
		fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		dst = os.NewFile(uintptr(fd), tmp)
		defer dst.Close()
		if _, err := io.Copy(dst, src); err != nil {
			return fmt.Errorf("copy: %w", Cause(err))
		}
	}
	fd := int(dst.Fd())
	if err := unix.Fchmod(fd, l.mode(e)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := tree.Futimens(fd, e.MTime); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return dst.Close()
}

func (l *linker) symlink(a at, e manifest.Entry, exists bool, st *unix.Stat_t) error {
	make := func(dirfd int, name string) error { return unix.Symlinkat(string(e.Target), dirfd, name) }
	if exists {
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if t, err := tree.Readlink(a.dirfd, a.name, st.Size); err == nil && string(t) == string(e.Target) {
				atomic.AddInt64(&l.res.Unchanged, 1)
				return nil
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			l.conflict(a.abs, "a directory where the manifest has a symlink")
			return nil
		}
		if !l.opts.Force && !l.isProjection(a, e, st) {
			l.conflict(a.abs, "exists and is not a projection")
			return nil
		}
		if err := tree.Replace(a.dirfd, a.name, tmpPrefix, make); err != nil {
			return wrapOp("replace", a.abs, err)
		}
		atomic.AddInt64(&l.res.Fixed, 1)
	} else {
		if err := wrapOp("symlink", a.abs, make(a.dirfd, a.name)); err != nil {
			return err
		}
		atomic.AddInt64(&l.res.Created, 1)
	}
	if l.opts.Method != Symlink {
		ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
		unix.UtimesNanoAt(a.dirfd, a.name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// finishDirs gives directories their recorded mode and mtime, deepest first,
// after everything inside them has been created. Each is opened without
// following symlinks and changed through its own descriptor.
func (l *linker) finishDirs() error {
	for i := len(l.dirs) - 1; i >= 0; i-- {
		d := l.dirs[i]
		fd, err := l.t.OpenDir(relOf(d.p))
		if err != nil {
			return fmt.Errorf("open %s: %w", Quote(l.abs(d.p)), Cause(err))
		}
		err = unix.Fchmod(fd, d.mode)
		if err == nil {
			err = tree.Futimens(fd, d.mtime)
		}
		unix.Close(fd)
		if err != nil {
			return wrapOp("set mode and mtime of", l.abs(d.p), err)
		}
	}
	return nil
}

func wrapOp(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, Quote(path), Cause(err))
}

// Cause returns the errno behind a path or link error, so that messages
// name the path once, in their own words.
func Cause(err error) error {
	var pe *iofs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// Quote renders a path for messages: as is when it is printable UTF-8,
// Go-quoted otherwise, so that odd names stay readable and unambiguous.
func Quote(p string) string {
	for _, r := range p {
		if r == '\uFFFD' || r < 0x20 || r == 0x7f {
			return fmt.Sprintf("%q", p)
		}
	}
	return p
}
