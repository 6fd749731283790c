package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/fs/tree"
)

// Adopter is a BlobWriter that can take a file's own inode into the store
// instead of copying it: direct mode, where the store belongs to the user
// (the spec's "chmod 444 only, no user isolation"). Daemon mode copies: a
// shared blob must belong to the daemon.
type Adopter interface {
	BlobWriter
	// Adopt stores f by linking its inode into the store (cas.Batch.Adopt).
	Adopt(ctx context.Context, f *os.File, mode uint32, exec bool) (cas.PutResult, error)
	// StoreDev is the store's filesystem: only files on it are adopted.
	StoreDev() uint64
}

// adoption is the read stage's policy for tier1 ingest in direct mode: a
// file is adopted, not copied, when that cannot change anything but the
// file itself and nobody can write it meanwhile. It remembers what it
// adopted, to give it back if the ingest fails before its manifest is
// committed.
type adoption struct {
	a   Adopter
	uid uint32
	dev uint64

	mu    sync.Mutex
	files []adopted
}

type adopted struct {
	path string
	ino  uint64
	mode uint32
	key  cas.Key
}

// try adopts the open file f (stat st, mode mode) if it is safe to:
//   - one link: the chmod to 0444 changes no file outside the tree;
//   - the caller's own file, on the store's filesystem;
//   - a write lease granted, which the kernel gives only when no other
//     process has the file open (writable mappings included) and which
//     holds off any new opener until it is released: from the first byte
//     hashed to the link into the store, nobody can change the content.
//
// The outcome says whether the file was adopted, was found already stored
// (hashed under the lease: no copy needed), or must be copied instead.
func (ad *adoption) try(ctx context.Context, f *os.File, path string, st *unix.Stat_t, exec bool) (cas.PutResult, adoptOutcome, error) {
	if st.Nlink != 1 || st.Uid != ad.uid || uint64(st.Dev) != ad.dev {
		return cas.PutResult{}, copyInstead, nil
	}
	fd := int(f.Fd())
	release, ok := writeLease(fd)
	if !ok {
		return cas.PutResult{}, copyInstead, nil // open elsewhere, or no leases here
	}
	defer release()
	mode := uint32(st.Mode) & 0o7777
	pr, err := ad.a.Adopt(ctx, f, mode, exec)
	switch {
	case errors.Is(err, cas.ErrNotAdoptable):
		return cas.PutResult{}, copyInstead, nil
	case err != nil:
		return pr, copyInstead, err
	case !pr.New:
		return pr, alreadyStored, nil
	}
	ad.mu.Lock()
	ad.files = append(ad.files, adopted{path: path, ino: st.Ino, mode: mode, key: pr.Key})
	ad.mu.Unlock()
	return pr, adoptedFile, nil
}

// adoptOutcome is what adoption.try did with a file.
type adoptOutcome int

const (
	copyInstead adoptOutcome = iota
	adoptedFile
	alreadyStored
)

// undo gives every adopted file back to its user after an ingest that
// failed before its manifest was committed. One whose temp link went with
// the batch is again the user's only link and gets its mode back. One a
// batch flush already published is a named blob: it must stay read-only,
// so the user's path gets a private copy instead.
func (ad *adoption) undo(t *tree.Tree, storeRoot string) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	for _, a := range ad.files {
		fd, err := t.OpenFile(a.path, unix.O_RDONLY|unix.O_NONBLOCK)
		if err != nil {
			continue
		}
		var st, bst unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Ino != a.ino {
			unix.Close(fd)
			continue // replaced since: not ours to change
		}
		published := unix.Stat(cas.BlobPath(storeRoot, a.key), &bst) == nil && bst.Ino == st.Ino && bst.Dev == st.Dev
		if !published {
			unix.Fchmod(fd, a.mode)
			unix.Close(fd)
			continue
		}
		f := os.NewFile(uintptr(fd), a.path)
		privateCopy(t, a, f, &st)
		f.Close()
	}
	ad.files = nil
}

// privateCopy replaces the path of a by a copy of f with a's mode and f's
// mtime, atomically.
func privateCopy(t *tree.Tree, a adopted, f *os.File, st *unix.Stat_t) error {
	parent, name := tree.Split(a.path)
	dfd, err := t.OpenDir(parent)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return tree.Replace(dfd, name, swapPrefix, func(dirfd int, tmp string) error {
		fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		dst := os.NewFile(uintptr(fd), tmp)
		defer dst.Close()
		if _, err := io.Copy(dst, io.NewSectionReader(f, 0, st.Size)); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		if err := unix.Fchmod(fd, a.mode); err != nil {
			return err
		}
		return tree.Futimens(fd, unix.TimespecToNsec(st.Mtim))
	})
}
