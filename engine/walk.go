package engine

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// walker produces the tree in pre-order: directories and symlinks straight
// to the manifest, files either reused from the previous manifest or queued
// for hashing.
type walker struct {
	// trustDirs is set when the old manifest's projections point into
	// this store, so its directory identities can vouch for them.
	trustDirs bool
	// trustBlobs is set when the store has removed no blob since the old
	// manifest was recorded (cas epochFile): its blobs are all there, and
	// an unchanged file's is not lstat'ed.
	trustBlobs bool
	// racyBefore: directory ctimes at or after it are not recorded.
	racyBefore int64
	in         *ingester
	old        *manifest.Reader
	jobs       chan<- []hashJob
	out        chan<- []recorded
	records    []recorded
	queued     []hashJob
	direntBuf  []byte // readDirents', reused
}

// mayHoldSymlinks reports whether a listing has a symlink, or an entry of
// a type the filesystem did not give.
func mayHoldSymlinks(ents []dirent) bool {
	for _, de := range ents {
		if (de.typ == iofs.ModeSymlink || de.unknown) && !skipNames[de.name] && !tree.IsTemp(de.name) {
			return true
		}
	}
	return false
}

// racyWindow is how recent a directory's ctime may be and still vouch for
// it on the next ingest: filesystems with coarse timestamps (jiffies) give
// a change made right after a listing the same ctime as the listing saw,
// so only ctimes older than any such tick are recorded (git's "racily
// clean" entries, the same problem).
const racyWindow = 2 * time.Second

func (w *walker) emit(ctx context.Context, r recorded) error {
	w.records = append(w.records, r)
	if len(w.records) < recordBatch {
		return nil
	}
	return w.flushRecords(ctx)
}

func (w *walker) queue(ctx context.Context, j hashJob) error {
	w.queued = append(w.queued, j)
	if len(w.queued) < jobBatch {
		return nil
	}
	return w.flushJobs(ctx)
}

func (w *walker) flush(ctx context.Context) error {
	if err := w.flushJobs(ctx); err != nil {
		return err
	}
	return w.flushRecords(ctx)
}

func (w *walker) flushRecords(ctx context.Context) error {
	if len(w.records) == 0 {
		return nil
	}
	select {
	case w.out <- w.records:
		w.records = make([]recorded, 0, recordBatch)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *walker) flushJobs(ctx context.Context) error {
	if len(w.queued) == 0 {
		return nil
	}
	select {
	case w.jobs <- w.queued:
		w.queued = make([]hashJob, 0, jobBatch)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// walkDir walks the open directory d (abs, key). Subdirectories are opened
// relative to it with O_NOFOLLOW, so a directory swapped for a symlink
// during the walk fails instead of leading the walk outside the tree.
//
// A directory whose inode and ctime still match what the manifest recorded
// when it was last listed has had no entry added, removed or replaced
// since (any of those changes its ctime, and a symlink's target cannot
// change without replacing it): its symlinks are known without a stat or a
// readlink, which makes an unchanged tier1 tree (all symlinks) cost about
// one listing per directory. Regular files are still stat'ed, since their
// content changes without touching the directory.
func (w *walker) walkDir(ctx context.Context, d *os.File, abs, key string) error {
	defer d.Close()
	var st unix.Stat_t
	// Stat'ed before listing: a change made during or after the listing
	// makes the recorded ctime stale, never the other way round.
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", vfs.Quote(abs), err)
	}
	ctime := unix.TimespecToNsec(st.Ctim)
	dirEntry := manifest.Entry{Kind: manifest.Dir, Mode: uint32(st.Mode) & 0o7777, MTime: unix.TimespecToNsec(st.Mtim)}
	trusted := false
	if w.trustDirs {
		// A recorded ctime was safe to record (older than the racy window
		// then, or vouched for after a swap): still the same, it still
		// vouches, however recent it is now.
		old, ok, err := w.old.Get(key)
		if err != nil {
			return err
		}
		trusted = ok && old.Kind == manifest.Dir && old.CTime != 0 && old.Ino == st.Ino && old.CTime == ctime
	}
	if w.direntBuf == nil {
		w.direntBuf = make([]byte, 64<<10)
	}
	ents, err := readDirents(d, w.direntBuf)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", vfs.Quote(abs), vfs.Cause(err))
	}
	// A directory's identity vouches for its symlinks and nothing else,
	// so one that lists none records none: a watcher's live refresh,
	// which cannot vouch, records such a directory exactly as this walk
	// does, and the ingest after a watched untar writes nothing (it used
	// to rewrite the project root's entry, one LMDB commit and its
	// fsyncs: 20-50 ms of a 290 ms ingest, issue 19). An entry whose
	// type the filesystem did not give may be a symlink.
	if mayHoldSymlinks(ents) {
		if trusted || ctime < w.racyBefore {
			dirEntry.Ino, dirEntry.CTime = st.Ino, ctime
		} else {
			// A ctime this close to now could be shared by a change still
			// to come on a filesystem with coarse timestamps: not
			// recorded, unless it is the one already on record (a live
			// refresh vouches for it once committed).
			w.liveVouch(key)
		}
	}
	if err := w.emit(ctx, recorded{path: key, entry: dirEntry}); err != nil {
		return err
	}
	fd := int(d.Fd())
	for _, de := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.name
		if skipNames[name] {
			continue
		}
		if tree.IsTemp(name) {
			// Left by a killed link, swap or adoption: the original is
			// intact, the temp never part of the tree. A swap's symlink
			// is removed; anything else is left to the run that made it
			// (a link may still be in flight) or to the next link, which
			// replaces it.
			// (A live refresh removes nothing: the ingest that made it
			// may still run beside the watcher.)
			if de.typ == iofs.ModeSymlink && strings.HasPrefix(name, tree.SwapTempPrefix) && w.in.opts.Paths == nil {
				unix.Unlinkat(fd, name, 0)
			}
			continue
		}
		if trusted && de.typ == iofs.ModeSymlink {
			if r, ok, err := w.knownSymlink(manifest.Join(key, name)); err != nil {
				return err
			} else if ok {
				if err := w.emit(ctx, r); err != nil {
					return err
				}
				continue
			}
		}
		childAbs := filepath.Join(abs, name)
		if abs != "/" {
			childAbs = abs + "/" + name // clean already: skip Join's Clean on the hot path
		}
		childKey := manifest.Join(key, name)
		var cst unix.Stat_t
		if err := unix.Fstatat(fd, name, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone since readdir
			}
			return fmt.Errorf("stat %s: %w", vfs.Quote(childAbs), err)
		}
		if childAbs == w.in.opts.StoreRoot {
			continue
		}
		switch cst.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open dir %s: %w", vfs.Quote(childAbs), err)
			}
			if err := w.walkDir(ctx, os.NewFile(uintptr(cfd), childAbs), childAbs, childKey); err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := tree.Readlink(fd, name, cst.Size)
			if err != nil {
				return fmt.Errorf("readlink %s: %w", vfs.Quote(childAbs), err)
			}
			r, err := w.symlinkEntry(childKey, target, &cst)
			if err != nil {
				return err
			}
			if err := w.emit(ctx, r); err != nil {
				return err
			}
		case unix.S_IFREG:
			if r, ok, err := w.reuse(childKey, &cst); err != nil {
				return err
			} else if ok {
				if err := w.emit(ctx, r); err != nil {
					return err
				}
				continue
			}
			if err := w.queue(ctx, hashJob{path: childKey, abs: childAbs}); err != nil {
				return err
			}
		default:
			w.in.opts.Warn(fmt.Sprintf("skipping %s: %s, not a regular file, directory or symlink", vfs.Quote(childAbs), fileType(uint32(cst.Mode))))
			atomic.AddInt64(&w.in.res.Skipped, 1)
		}
	}
	return nil
}

// knownSymlink returns the previous manifest's entry for a symlink in a
// directory unchanged since it was recorded: the projection of a file, or a
// symlink of the tree.
func (w *walker) knownSymlink(key string) (recorded, bool, error) {
	e, ok, err := w.old.Get(key)
	if err != nil || !ok {
		return recorded{}, false, err
	}
	switch e.Kind {
	case manifest.File:
		return recorded{path: key, entry: e, reused: true, projected: true, unchanged: true}, true, nil
	case manifest.Symlink:
		return recorded{path: key, entry: e, unchanged: true}, true, nil
	}
	return recorded{}, false, nil
}

// reuse returns the previous manifest's entry for an unchanged regular file
// whose blob is still present.
func (w *walker) reuse(key string, st *unix.Stat_t) (recorded, bool, error) {
	e, ok, err := w.old.Get(key)
	if err != nil || !ok || e.Kind != manifest.File {
		return recorded{}, false, err
	}
	if e.Ino != st.Ino || e.Size != st.Size || e.MTime != unix.TimespecToNsec(st.Mtim) ||
		e.CTime != unix.TimespecToNsec(st.Ctim) || e.Mode != uint32(st.Mode)&0o7777 {
		return w.hardlinkProjection(key, e, st)
	}
	if !w.trustBlobs && !exists(w.blobPath(e.Key())) {
		return recorded{}, false, nil
	}
	return recorded{path: key, entry: e, reused: true, unchanged: true}, true, nil
}

// hardlinkProjection returns the previous manifest's entry for a path that
// is its blob's own inode (ingest --method hardlink). Its content is the
// blob's whatever its times say (a deduplicated file's inode is another
// file's, with that file's mtime, and every link made to it changes its
// ctime), so identity with the blob is the test: one stat of the blob,
// kept off ordinary files by checking first for the blob's read-only mode.
// The entry then records the blob's inode and ctime, so that the next
// ingest trusts an unchanged inode and ctime as it does for any file
// (a write, chmod or link changes the ctime) and skips that stat.
func (w *walker) hardlinkProjection(key string, e manifest.Entry, st *unix.Stat_t) (recorded, bool, error) {
	if e.Size != st.Size || st.Nlink < 2 || uint32(st.Mode)&0o7777 != e.Key().Mode() {
		return recorded{}, false, nil
	}
	ctime := unix.TimespecToNsec(st.Ctim)
	if e.Ino == st.Ino && e.CTime == ctime {
		return recorded{path: key, entry: e, reused: true, projected: true}, true, nil
	}
	if !isBlob(w.blobPath(e.Key()), st) {
		return recorded{}, false, nil
	}
	e.Ino, e.CTime = st.Ino, 0
	if ctime < w.racyBefore {
		e.CTime = ctime // a ctime this close to now could be shared by a change to come
	}
	return recorded{path: key, entry: e, reused: true, projected: true}, true, nil
}

// symlinkEntry records a symlink. One that already projects the previous
// manifest's file (the result of an earlier tier1 ingest) stands for that
// file, unchanged.
func (w *walker) symlinkEntry(key string, target []byte, st *unix.Stat_t) (recorded, error) {
	if e, ok, err := w.old.Get(key); err != nil {
		return recorded{}, err
	} else if ok && e.Kind == manifest.File && string(target) == w.blobPath(e.Key()) {
		// Not checked against the store: if the blob were gone, its
		// content would be gone with it, and re-reading the dangling
		// link could not bring it back (verify names such losses).
		return recorded{path: key, entry: e, reused: true, projected: true}, nil
	}
	e := manifest.Entry{Kind: manifest.Symlink, Mode: 0o777, MTime: unix.TimespecToNsec(st.Mtim), Target: target}
	return recorded{path: key, entry: e}, nil
}

func (w *walker) blobPath(k cas.Key) string { return w.in.blobPath(k) }

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "special file"
}
