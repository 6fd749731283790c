package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// A live refresh (IngestOptions.Paths) is an ingest of the few paths a
// watcher saw change, through the same pipeline as a walk: each path is
// looked at as it is now, so events that came in any order, or several for
// one path, all come to the same thing.
//
//   - a regular file is reused when its stat matches its entry, read
//     otherwise (or left as it was while another process has it open,
//     with SkipBusy);
//   - a symlink is recorded as a walk records it;
//   - a directory is walked whole, and whatever was recorded below it and
//     is no longer there leaves the manifest;
//   - a path that is gone leaves the manifest with everything below it.
//
// The parent of each path gets its directory entry refreshed (mode and
// mtime: a listing changes both), with no inode or ctime, since a
// directory not listed here cannot vouch for its symlinks (walk.go).

// refresh produces the records of a live refresh of paths.
func (w *walker) refresh(ctx context.Context, paths []string) error {
	in := w.in
	paths = slices.Clone(paths)
	slices.Sort(paths)
	paths = slices.Compact(paths)
	dirs := in.t.NewDirs()
	defer dirs.Close()
	walked := map[string]bool{}
	parents := map[string]bool{}
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := manifest.CheckPath(p); err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
		if !manifest.Within(p, in.subtree) {
			return fmt.Errorf("refresh: %s is not below %s", p, in.subtree)
		}
		if skippedKey(p) || coveredBy(p, walked) {
			continue
		}
		in.prune = append(in.prune, p)
		if p != in.subtree {
			if err := w.refreshParent(ctx, dirs, p, parents); err != nil {
				return err
			}
		}
		if err := w.refreshPath(ctx, dirs, p, walked); err != nil {
			return err
		}
	}
	return nil
}

// refreshPath records p as it is now.
func (w *walker) refreshPath(ctx context.Context, dirs *tree.Dirs, p string, walked map[string]bool) error {
	abs := w.in.abs(p)
	if p == manifest.RootPath || p == w.in.subtree {
		walked[p] = true
		fd, err := w.in.t.OpenDir(p)
		if err != nil {
			return fmt.Errorf("open dir %s: %w", vfs.Quote(abs), vfs.Cause(err))
		}
		return w.walkDir(ctx, os.NewFile(uintptr(fd), abs), abs, p)
	}
	parent, name := tree.Split(p)
	pfd, err := dirs.Get(parent)
	if gone(err) {
		return nil // its parent went: gone with it
	}
	if err != nil {
		return fmt.Errorf("open dir %s: %w", vfs.Quote(w.in.abs(parent)), vfs.Cause(err))
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); gone(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("stat %s: %w", vfs.Quote(abs), err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		walked[p] = true
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if gone(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open dir %s: %w", vfs.Quote(abs), err)
		}
		return w.walkDir(ctx, os.NewFile(uintptr(fd), abs), abs, p)
	case unix.S_IFLNK:
		target, err := tree.Readlink(pfd, name, st.Size)
		if gone(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("readlink %s: %w", vfs.Quote(abs), err)
		}
		r, err := w.symlinkEntry(p, target, &st)
		if err != nil {
			return err
		}
		return w.emit(ctx, r)
	case unix.S_IFREG:
		if r, ok, err := w.reuse(p, &st); err != nil {
			return err
		} else if ok {
			return w.emit(ctx, r)
		}
		return w.queue(ctx, hashJob{path: p, abs: abs})
	}
	w.in.opts.Warn(fmt.Sprintf("skipping %s: %s, not a regular file, directory or symlink", vfs.Quote(abs), fileType(uint32(st.Mode))))
	return nil
}

// refreshParent records the directory entry of p's parent (and of any
// ancestor below the subtree the manifest lacks), once per refresh.
func (w *walker) refreshParent(ctx context.Context, dirs *tree.Dirs, p string, done map[string]bool) error {
	parent, _ := tree.Split(p)
	for {
		if done[parent] || !manifest.Within(parent, w.in.subtree) {
			return nil
		}
		done[parent] = true
		fd, err := dirs.Get(parent)
		if gone(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open dir %s: %w", vfs.Quote(w.in.abs(parent)), vfs.Cause(err))
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", vfs.Quote(w.in.abs(parent)), err)
		}
		e := manifest.Entry{Kind: manifest.Dir, Mode: uint32(st.Mode) & 0o7777, MTime: unix.TimespecToNsec(st.Mtim)}
		if err := w.emit(ctx, recorded{path: parent, entry: e}); err != nil {
			return err
		}
		w.liveVouch(parent)
		if parent == w.in.subtree || parent == manifest.RootPath {
			return nil
		}
		// An ancestor already recorded needs no more than its own entry.
		if _, ok, err := w.old.Get(parent); err != nil || ok {
			return err
		}
		parent, _ = tree.Split(parent)
	}
}

// liveVouch notes a directory a live refresh recorded without its
// identity, for the vouching after its commit (vouchSwapped: the listing
// checked against the manifest, the filesystem's clock past its ctime).
// A watcher records a directory at once, inside the racy window, so
// without it the ingest after a watched npm install wrote the identity of
// every directory with symlinks (node_modules/.bin): one more commit.
// vouchDir passes over a directory without symlinks, which records none.
func (w *walker) liveVouch(key string) {
	if w.in.opts.Paths == nil {
		return
	}
	if w.in.unvouched == nil {
		w.in.unvouched = map[string]int64{}
	}
	w.in.unvouched[key] = 0
}

// coveredBy reports whether p lies below a directory already walked.
func coveredBy(p string, walked map[string]bool) bool {
	for q := p; ; {
		if walked[q] {
			return true
		}
		i := strings.LastIndexByte(q, '/')
		if i < 0 {
			return walked[manifest.RootPath]
		}
		q = q[:i]
	}
}

// skippedKey reports whether a live refresh leaves p out: a name in
// skipNames at any depth, or one of vrift's own temporary names.
func skippedKey(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if Unrecorded(c) {
			return true
		}
	}
	return false
}

// Unrecorded reports whether a name is never recorded by a live refresh
// (nor watched): vrift's own directory, .git, and vrift's temp names.
func Unrecorded(name string) bool { return skipNames[name] || tree.IsTemp(name) }

// gone reports whether err says a path is no longer there.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}
