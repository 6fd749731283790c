package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
)

// hashFile reads one file into the store. The file's identity is taken from
// the open descriptor before and after reading; a file that changes while it
// is read is read again, so the manifest never pairs content with the stat
// of a different version.
func (in *ingester) hashFile(ctx context.Context, j hashJob) (recorded, error) {
	for attempt := 0; ; attempt++ {
		// By descriptor below the root (one openat2, no symlink followed),
		// and not os.Open: a regular file needs none of the poller set-up
		// os.Open does, and this runs once per file.
		fd, err := in.t.OpenFile(j.path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
		if err != nil {
			return recorded{}, fmt.Errorf("read %s: %w", vfs.Quote(j.abs), vfs.Cause(err))
		}
		f := os.NewFile(uintptr(fd), j.abs)
		var before unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &before); err != nil {
			f.Close()
			return recorded{}, fmt.Errorf("stat %s: %w", vfs.Quote(j.abs), err)
		}
		if before.Mode&unix.S_IFMT != unix.S_IFREG {
			f.Close()
			return recorded{}, fmt.Errorf("read %s: replaced by a non-regular file during ingest", vfs.Quote(j.abs))
		}
		var release func()
		if in.opts.SkipBusy {
			var busy bool
			if release, busy = busyLease(fd); busy {
				f.Close()
				return recorded{path: j.path, busy: true}, nil
			}
		}
		r, retry, err := in.readOpen(ctx, f, j, &before)
		if release != nil {
			release()
		}
		f.Close()
		if err != nil || !retry {
			return r, err
		}
		if attempt == 2 {
			if in.opts.SkipBusy {
				// A watcher's refresh: a file still being written
				// (macOS has no test for an open writer, and on Linux
				// one the lease missed, such as a writable mapping) is
				// retried later, like one open elsewhere, rather than
				// failing the whole commit.
				return recorded{path: j.path, busy: true}, nil
			}
			return recorded{}, fmt.Errorf("read %s: file keeps changing while being read", vfs.Quote(j.abs))
		}
	}
}

// readOpen reads (and stores) the open file f, stat'ed as before. retry
// is set when the file changed while it was read.
func (in *ingester) readOpen(ctx context.Context, f *os.File, j hashJob, before *unix.Stat_t) (r recorded, retry bool, err error) {
	fd := int(f.Fd())
	var after unix.Stat_t
	mode := uint32(before.Mode) & 0o7777
	if mode == 0o444 || mode == 0o555 {
		// Read-only: perhaps adopted by an ingest killed before its
		// manifest recorded the mode, after its chmod and before or
		// after it linked the file into the store (so any nlink).
		if m, ok := cas.AdoptedMode(fd); ok {
			mode = m
		}
	}
	exec := mode&0o111 != 0
	if in.adopt != nil {
		pr, how, err := in.adopt.try(ctx, f, j.path, before, exec)
		if errors.Is(err, cas.ErrNotShared) {
			return recorded{path: j.path, private: true}, false, nil
		}
		if err != nil {
			return recorded{}, false, fmt.Errorf("store %s: %w", vfs.Quote(j.abs), err)
		}
		if how != copyInstead {
			// The lease kept every writer out from the first byte
			// hashed on: the content is the version stat'ed before.
			// (An adoption's chmod and link changed its ctime, so
			// there is no after stat to compare.)
			in.countRead(pr.Key.Size)
			e := manifest.Entry{Kind: manifest.File, Mode: mode, MTime: unix.TimespecToNsec(before.Mtim),
				Size: pr.Key.Size, Sum: pr.Key.Sum, Ino: before.Ino, CTime: unix.TimespecToNsec(before.Ctim)}
			return recorded{path: j.path, entry: e, newBlob: how == adoptedFile, adopted: how == adoptedFile}, false, nil
		}
	}
	var pr cas.PutResult
	if cp, ok := in.opts.Blobs.(CheckedPutter); ok {
		// Checked before the content is kept, so a file that changed
		// while read leaves no blob of its mixed content behind.
		pr, err = cp.PutFileChecked(ctx, f, exec, func() error {
			if err := unix.Fstat(int(f.Fd()), &after); err != nil {
				return err
			}
			if !sameVersion(before, &after) {
				return errChangedWhileRead
			}
			return nil
		})
		if errors.Is(err, errChangedWhileRead) {
			err = nil // read it again, below
		}
	} else {
		pr, err = in.opts.Blobs.PutFile(ctx, f, exec)
		if err == nil {
			err = unix.Fstat(int(f.Fd()), &after)
		}
	}
	if errors.Is(err, cas.ErrNotShared) {
		return recorded{path: j.path, private: true}, false, nil
	}
	if err != nil {
		return recorded{}, false, fmt.Errorf("store %s: %w", vfs.Quote(j.abs), err)
	}
	in.countRead(pr.Key.Size)
	if sameVersion(before, &after) && pr.Key.Size == before.Size {
		e := manifest.Entry{Kind: manifest.File, Mode: mode, MTime: unix.TimespecToNsec(before.Mtim),
			Size: pr.Key.Size, Sum: pr.Key.Sum, Ino: before.Ino, CTime: unix.TimespecToNsec(before.Ctim)}
		return recorded{path: j.path, entry: e, newBlob: pr.New}, false, nil
	}
	return recorded{}, true, nil
}

// countRead adds one file of size bytes to the content read.
func (in *ingester) countRead(size int64) {
	atomic.AddInt64(&in.res.ReadFiles, 1)
	atomic.AddInt64(&in.res.ReadBytes, size)
}

// errChangedWhileRead stops a checked put of a file that changed while it
// was read.
var errChangedWhileRead = errors.New("changed while read")

// CheckedPutter is a BlobWriter that can run a check once a file is read
// and before its content is kept (direct mode: cas.Batch.PutChecked).
type CheckedPutter interface {
	PutFileChecked(ctx context.Context, f *os.File, exec bool, unchanged func() error) (cas.PutResult, error)
}

func sameVersion(a, b *unix.Stat_t) bool {
	return a.Ino == b.Ino && a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim
}
