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
	// Reflink clones the blob's extents (FICLONE): a private copy that costs
	// no space, where the filesystem supports it.
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
}

// LinkResult reports a projection.
type LinkResult struct {
	Method    Method   `json:"method"`
	Dest      string   `json:"dest"`
	Created   int64    `json:"created"`
	Fixed     int64    `json:"fixed"`
	Unchanged int64    `json:"unchanged"`
	Conflicts []string `json:"conflicts"`
}

// ErrConflict is returned (wrapped) when paths were left alone because they
// hold something that is not a projection.
var ErrConflict = errors.New("conflicting paths left alone")

// tmpPrefix names temporary files made beside their destination.
const tmpPrefix = ".vrift-tmp-"

// Link materializes the manifest's tree (or opts.Subtree) under opts.Dest.
// It is incremental: it creates what is missing, fixes projections that
// differ and leaves what already matches. A path holding something that is
// not a projection is a conflict: it is listed and left alone unless
// opts.Force is set. Every replacement is atomic (temp name, then rename).
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
		if err := l.prepareDest(); err != nil {
			return err
		}
		return l.walk(ctx, r)
	})
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
	p, abs string
	e      manifest.Entry
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
			for batch := range work {
				for _, lf := range batch {
					if err := l.project(lf); err != nil {
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
	err := r.Walk(l.opts.Subtree, func(p string, e manifest.Entry) error {
		if l.blocked != "" && manifest.Within(p, l.blocked) {
			return nil
		}
		abs := l.abs(p)
		look := !l.fresh[filepath.Dir(abs)] || p == l.opts.Subtree
		if e.Kind == manifest.Dir {
			return l.dir(p, abs, e, look)
		}
		batch = append(batch, leaf{p: p, abs: abs, e: e, look: look})
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

// lstat reports whether abs exists, filling st.
func lstat(abs string, st *unix.Stat_t) (bool, error) {
	switch err := unix.Lstat(abs, st); {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", Quote(abs), err)
	}
}

type linker struct {
	opts LinkOptions
	dest string
	mu   sync.Mutex // guards res.Conflicts
	res  *LinkResult
	// fresh holds directories this run created: their children cannot
	// exist yet, so they are created without a look first.
	fresh map[string]bool
	// blocked is a conflicting directory key whose subtree is skipped.
	blocked string
	dirs    []dirFix
}

type dirFix struct {
	abs   string
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
	return l.opts.StoreRoot + "/" + e.Key().RelPath()
}

// prepareDest creates dest and the ancestors of the subtree below it.
func (l *linker) prepareDest() error {
	top := l.dest
	if l.opts.Subtree != manifest.RootPath {
		top = filepath.Dir(l.abs(l.opts.Subtree))
	}
	if err := os.MkdirAll(top, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Quote(top), Cause(err))
	}
	return nil
}

func (l *linker) conflict(abs, why string) {
	l.mu.Lock()
	l.res.Conflicts = append(l.res.Conflicts, Quote(abs)+": "+why)
	l.mu.Unlock()
}

func (l *linker) project(lf leaf) error {
	var st unix.Stat_t
	exists := false
	if lf.look {
		var err error
		if exists, err = lstat(lf.abs, &st); err != nil {
			return err
		}
	}
	switch lf.e.Kind {
	case manifest.File:
		return l.file(lf.abs, lf.e, exists, &st)
	case manifest.Symlink:
		return l.symlink(lf.abs, lf.e, exists, &st)
	}
	return fmt.Errorf("%s: unknown entry kind %v", Quote(lf.abs), lf.e.Kind)
}

func (l *linker) dir(p, abs string, e manifest.Entry, look bool) error {
	var st unix.Stat_t
	exists := false
	if look {
		var err error
		if exists, err = lstat(abs, &st); err != nil {
			return err
		}
	}
	l.dirs = append(l.dirs, dirFix{abs: abs, mode: e.Mode, mtime: e.MTime})
	if exists {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			l.conflict(abs, "not a directory")
			l.blocked = p
			return nil
		}
		if st.Mode&0o200 == 0 {
			// Read-only directories (Go's module cache) are made writable
			// while we work and get their mode back at the end.
			if err := os.Chmod(abs, iofs.FileMode(st.Mode&0o777|0o700)); err != nil {
				return fmt.Errorf("chmod %s: %w", Quote(abs), Cause(err))
			}
		}
		atomic.AddInt64(&l.res.Unchanged, 1)
		return nil
	}
	if err := os.Mkdir(abs, 0o700|iofs.FileMode(e.Mode&0o777)); err != nil {
		return fmt.Errorf("mkdir %s: %w", Quote(abs), Cause(err))
	}
	l.fresh[abs] = true
	atomic.AddInt64(&l.res.Created, 1)
	return nil
}

// isProjection reports whether the existing path is something vrift made
// and may therefore replace: a symlink into the store, a hardlink of the
// entry's blob, or a copy that still matches the entry.
func (l *linker) isProjection(abs string, e manifest.Entry, st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		t, err := os.Readlink(abs)
		return err == nil && strings.HasPrefix(t, filepath.Join(l.opts.StoreRoot, cas.HashDir)+"/")
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
	return st.Size == e.Size && unix.TimespecToNsec(st.Mtim) == e.MTime && uint32(st.Mode)&0o7777 == e.Mode
}

func (l *linker) file(abs string, e manifest.Entry, exists bool, st *unix.Stat_t) error {
	if exists {
		if l.upToDate(abs, e, st) {
			atomic.AddInt64(&l.res.Unchanged, 1)
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			l.conflict(abs, "a directory where the manifest has a file")
			return nil
		}
		if !l.opts.Force && !l.isProjection(abs, e, st) {
			l.conflict(abs, "exists and is not a projection")
			return nil
		}
	}
	if err := l.place(abs, e, exists); err != nil {
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
func (l *linker) upToDate(abs string, e manifest.Entry, st *unix.Stat_t) bool {
	switch l.opts.Method {
	case Symlink:
		t, err := os.Readlink(abs)
		return st.Mode&unix.S_IFMT == unix.S_IFLNK && err == nil && t == l.blob(e)
	case Hardlink:
		return st.Mode&unix.S_IFMT == unix.S_IFREG && l.sameInodeAsBlob(e, st)
	default:
		return st.Mode&unix.S_IFMT == unix.S_IFREG && l.matchesCopy(e, st) && !l.sameInodeAsBlob(e, st)
	}
}

// place creates the file projection at abs, atomically replacing what is
// there when replace is set.
func (l *linker) place(abs string, e manifest.Entry, replace bool) error {
	blob := l.blob(e)
	switch l.opts.Method {
	case Symlink:
		if !replace {
			return wrapOp("symlink", abs, os.Symlink(blob, abs))
		}
		return replaceWith(abs, func(tmp string) error { return os.Symlink(blob, tmp) })
	case Hardlink:
		link := func(to string) error {
			err := os.Link(blob, to)
			switch {
			case errors.Is(err, unix.EXDEV):
				return fmt.Errorf("hardlink %s: the store is on another filesystem; use --method copy or reflink", Quote(abs))
			case errors.Is(err, unix.EPERM):
				return fmt.Errorf("hardlink %s: not permitted (a store owned by another user cannot be hardlinked, see fs.protected_hardlinks); use --method copy", Quote(abs))
			case errors.Is(err, unix.ENOENT):
				return missingBlob(abs, e)
			}
			return wrapOp("hardlink", abs, err)
		}
		if !replace {
			return link(abs)
		}
		return replaceWith(abs, link)
	case Copy, Reflink:
		return replaceWith(abs, func(tmp string) error { return l.copyBlob(blob, tmp, e) })
	}
	return fmt.Errorf("unknown link method %q", l.opts.Method)
}

func missingBlob(abs string, e manifest.Entry) error {
	return fmt.Errorf("%s: blob %s is missing from the store (run vrift verify)", Quote(abs), e.Key().Name())
}

// ErrReflinkUnsupported is returned (wrapped) where the filesystem cannot
// clone extents.
var ErrReflinkUnsupported = errors.New("reflink not supported")

// copyBlob writes a user-owned copy (or clone) of blob at tmp, with the
// entry's mode and mtime.
func (l *linker) copyBlob(blob, tmp string, e manifest.Entry) error {
	src, err := os.Open(blob)
	if errors.Is(err, iofs.ErrNotExist) {
		return missingBlob(tmp, e)
	} else if err != nil {
		return fmt.Errorf("open blob %s: %w", e.Key().Name(), Cause(err))
	}
	defer src.Close()
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return wrapOp("create", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	if l.opts.Method == Reflink {
		if err := cloneFile(dst, src); err != nil {
			return fmt.Errorf("reflink %s: %w (%v); use --method copy or hardlink", Quote(l.dest), ErrReflinkUnsupported, err)
		}
	} else if _, err := io.Copy(dst, src); err != nil {
		return wrapOp("copy", tmp, err)
	}
	if err := dst.Chmod(e.FileMode()); err != nil {
		return wrapOp("chmod", tmp, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, tmp, ts, 0); err != nil {
		return wrapOp("set mtime", tmp, err)
	}
	ok = true
	return wrapOp("close", tmp, dst.Close())
}

func (l *linker) symlink(abs string, e manifest.Entry, exists bool, st *unix.Stat_t) error {
	if exists {
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if t, err := os.Readlink(abs); err == nil && t == string(e.Target) {
				atomic.AddInt64(&l.res.Unchanged, 1)
				return nil
			}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			l.conflict(abs, "a directory where the manifest has a symlink")
			return nil
		}
		if !l.opts.Force && !l.isProjection(abs, e, st) {
			l.conflict(abs, "exists and is not a projection")
			return nil
		}
		if err := replaceWith(abs, func(tmp string) error { return os.Symlink(string(e.Target), tmp) }); err != nil {
			return err
		}
		atomic.AddInt64(&l.res.Fixed, 1)
	} else {
		if err := wrapOp("symlink", abs, os.Symlink(string(e.Target), abs)); err != nil {
			return err
		}
		atomic.AddInt64(&l.res.Created, 1)
	}
	if l.opts.Method != Symlink {
		ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
		unix.UtimesNanoAt(unix.AT_FDCWD, abs, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// finishDirs gives directories their recorded mode and mtime, deepest first,
// after everything inside them has been created.
func (l *linker) finishDirs() error {
	for i := len(l.dirs) - 1; i >= 0; i-- {
		d := l.dirs[i]
		if err := os.Chmod(d.abs, iofs.FileMode(d.mode&0o777)|specialBits(d.mode)); err != nil {
			return wrapOp("chmod", d.abs, err)
		}
		ts := []unix.Timespec{unix.NsecToTimespec(d.mtime), unix.NsecToTimespec(d.mtime)}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.abs, ts, 0); err != nil {
			return wrapOp("set mtime", d.abs, err)
		}
	}
	return nil
}

func specialBits(mode uint32) iofs.FileMode {
	return manifest.Entry{Mode: mode}.FileMode() &^ iofs.ModePerm
}

// replaceWith makes a new version of path under a temporary name beside it
// and renames it over path, so that path is never missing or half-written.
func replaceWith(path string, make func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), tmpPrefix+filepath.Base(path))
	if len(filepath.Base(tmp)) > 255 {
		tmp = tmp[:len(tmp)-(len(filepath.Base(tmp))-255)]
	}
	err := make(tmp)
	if errors.Is(err, iofs.ErrExist) {
		// Left by an interrupted replacement.
		os.Remove(tmp)
		err = make(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return wrapOp("replace", path, err)
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
