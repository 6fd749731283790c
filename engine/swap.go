package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"path"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// swapWorkers is how many in-place swaps run at once.
const swapWorkers = 16

// dirUnlocker makes the user's read-only directories (Go's module cache is
// all 0555) writable while files in them are swapped or removed, and gives
// them their mode back afterwards. Directories are named by key and changed
// through descriptors opened without following symlinks.
type dirUnlocker struct {
	t     *tree.Tree
	mu    sync.Mutex
	modes map[string]uint32
}

// unlock adds u+w to the directory dir (a key), once, and reports whether
// that changed anything.
func (u *dirUnlocker) unlock(dir string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, done := u.modes[dir]; done {
		return true // another worker already did
	}
	fd, err := u.t.OpenDir(dir)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&0o200 != 0 {
		return false
	}
	if unix.Fchmod(fd, uint32(st.Mode)&0o7777|0o200) != nil {
		return false
	}
	if u.modes == nil {
		u.modes = map[string]uint32{}
	}
	u.modes[dir] = uint32(st.Mode) & 0o7777
	return true
}

func (u *dirUnlocker) restore() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for dir, mode := range u.modes {
		if fd, err := u.t.OpenDir(dir); err == nil {
			unix.Fchmod(fd, mode)
			unix.Close(fd)
		}
	}
	u.modes = nil
}

// projectInPlace replaces each ingested regular file by a projection of
// its blob, but only where the file is still the version that was hashed.
func (in *ingester) projectInPlace(ctx context.Context) error {
	type swap struct {
		p     string
		entry manifest.Entry
	}
	// Swaps free the replaced files' blocks, which waits on the disk:
	// many in flight overlap those waits (measured on the npm fixture: 8.1 s
	// with one worker, 4.8 s with 4, 3.8-4.6 s with 16).
	g, gctx := errgroup.WithContext(ctx)
	swaps := make(chan []swap, 8)
	var projected atomic.Int64
	for range swapWorkers {
		g.Go(func() error {
			dirs := in.t.NewDirs()
			defer dirs.Close()
			for batch := range swaps {
				for _, s := range batch {
					ok, err := in.swapIfUnchanged(dirs, s.p, s.entry)
					if err != nil {
						return err
					}
					if ok {
						projected.Add(1)
					}
				}
			}
			return nil
		})
	}
	// Swaps change their directory's mtime; it gets the recorded one back.
	dirTimes := map[string]int64{}
	touched := map[string]int64{}
	g.Go(func() error {
		defer close(swaps)
		var batch []swap
		err := in.m.View(func(r *manifest.Reader) error {
			return r.Walk(in.subtree, func(p string, e manifest.Entry) error {
				if e.Kind == manifest.Dir {
					dirTimes[p] = e.MTime
					return nil
				}
				if e.Kind != manifest.File {
					return nil
				}
				if !in.unprojected.has(maphash.String(in.seed, p)) {
					return nil // projected already
				}
				if mt, ok := dirTimes[path.Dir(p)]; ok {
					touched[path.Dir(p)] = mt
				}
				batch = append(batch, swap{p, e})
				if len(batch) < jobBatch {
					return nil
				}
				select {
				case swaps <- batch:
					batch = nil
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
		})
		if err == nil && len(batch) > 0 {
			swaps <- batch
		}
		return err
	})
	err := g.Wait()
	in.res.Projected = projected.Load()
	in.writable.restore()
	in.restoreDirTimes(touched)
	if err == nil {
		in.vouchSwapped(ctx, touched)
	}
	return err
}

// swapIfUnchanged replaces the regular file p by a projection of e's blob
// (a symlink to it, or a hardlink of it) if it is still the version that
// was stored: the projection is made under a temporary name beside it and
// renamed over it, in its directory's descriptor, so the path is never
// missing and no rename is redirected. An adopted file is its blob
// already: a hardlink projection leaves it as it is.
func (in *ingester) swapIfUnchanged(dirs *tree.Dirs, p string, e manifest.Entry) (bool, error) {
	parent, name := tree.Split(p)
	abs := in.abs(p)
	dfd, err := dirs.Get(parent)
	if err != nil {
		in.opts.Warn(fmt.Sprintf("not projecting %s: %v", vfs.Quote(abs), vfs.Cause(err)))
		return false, nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		in.opts.Warn(fmt.Sprintf("not projecting %s: %v", vfs.Quote(abs), err))
		return false, nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil // already a projection (or replaced by the user)
	}
	if st.Ino != e.Ino || st.Size != e.Size || unix.TimespecToNsec(st.Mtim) != e.MTime {
		in.opts.Warn(fmt.Sprintf("not projecting %s: changed since it was stored", vfs.Quote(abs)))
		return false, nil
	}
	target := in.blobPath(e.Key())
	project := func(dirfd int, tmp string) error { return unix.Symlinkat(target, dirfd, tmp) }
	if in.opts.Method == vfs.Hardlink {
		if isBlob(target, &st) {
			return true, nil // adopted: the path is the blob's inode
		}
		project = func(dirfd int, tmp string) error { return unix.Linkat(unix.AT_FDCWD, target, dirfd, tmp, 0) }
	}
	err = tree.Replace(dfd, name, swapPrefix, project)
	if errors.Is(err, unix.EACCES) && in.writable.unlock(parent) {
		err = tree.Replace(dfd, name, swapPrefix, project)
	}
	if errors.Is(err, unix.EMLINK) {
		// The blob has as many links as the filesystem allows (65,000 on
		// ext4): this file stays a copy of it.
		in.opts.Warn(fmt.Sprintf("not projecting %s: its blob has the most hardlinks the filesystem allows", vfs.Quote(abs)))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("project %s: %w", vfs.Quote(abs), err)
	}
	return true, nil
}

// isBlob reports whether st is the inode of the blob at path: a hardlink
// projection, or a file adopted into the store.
func isBlob(path string, st *unix.Stat_t) bool {
	var bst unix.Stat_t
	return unix.Fstatat(unix.AT_FDCWD, path, &bst, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		bst.Ino == st.Ino && bst.Dev == st.Dev && bst.Mode&unix.S_IFMT == unix.S_IFREG
}

// removeTree deletes the ingested files for phantom mode: recorded files and
// symlinks that are unchanged, then the directories that are left empty,
// deepest first. The subtree's own directory stays, as a mount point.
func (in *ingester) removeTree(ctx context.Context) error {
	dirs := in.t.NewDirs()
	defer dirs.Close()
	// remove unlinks p through its parent's descriptor, making the parent
	// writable for the time of the ingest if it is read-only.
	remove := func(p string, flags int) error {
		parent, name := tree.Split(p)
		dfd, err := dirs.Get(parent)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dfd, name, flags)
		if errors.Is(err, unix.EACCES) && in.writable.unlock(parent) {
			err = unix.Unlinkat(dfd, name, flags)
		}
		return err
	}
	var subdirs []string
	err := in.m.View(func(r *manifest.Reader) error {
		return r.Walk(in.subtree, func(p string, e manifest.Entry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.Kind == manifest.Dir {
				if p != in.subtree {
					subdirs = append(subdirs, p)
				}
				return nil
			}
			abs := in.abs(p)
			parent, name := tree.Split(p)
			dfd, err := dirs.Get(parent)
			if err != nil {
				return nil // its directory is gone or no longer a directory
			}
			var st unix.Stat_t
			if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return nil
			}
			switch e.Kind {
			case manifest.File:
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFREG:
					if st.Ino != e.Ino || st.Size != e.Size || unix.TimespecToNsec(st.Mtim) != e.MTime {
						in.opts.Warn(fmt.Sprintf("keeping %s: changed since it was stored", vfs.Quote(abs)))
						return nil
					}
				case unix.S_IFLNK:
					if t, err := tree.Readlink(dfd, name, st.Size); err != nil || string(t) != in.blobPath(e.Key()) {
						return nil
					}
				default:
					return nil
				}
			case manifest.Symlink:
				if st.Mode&unix.S_IFMT != unix.S_IFLNK {
					return nil
				}
				if t, err := tree.Readlink(dfd, name, st.Size); err != nil || string(t) != string(e.Target) {
					return nil
				}
			}
			if err := remove(p, 0); err != nil {
				return fmt.Errorf("phantom: remove %s: %w", vfs.Quote(abs), vfs.Cause(err))
			}
			in.res.Removed++
			return nil
		})
	})
	if err != nil {
		return err
	}
	for i := len(subdirs) - 1; i >= 0; i-- {
		// A directory that is not empty holds something that was not
		// ingested, and stays.
		if remove(subdirs[i], unix.AT_REMOVEDIR) == nil {
			in.res.Removed++
		}
	}
	in.writable.restore()
	return nil
}

// restoreDirTimes gives directories (by key) their recorded mtime back,
// without following a symlink at any component.
func (in *ingester) restoreDirTimes(dirs map[string]int64) {
	for dir, mtime := range dirs {
		if fd, err := in.t.OpenDir(dir); err == nil {
			tree.SetMTimeAt(fd, ".", mtime)
			unix.Close(fd)
		}
	}
}
