package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// adoptTag marks an adopted file's temp link in the store's temp directory:
// put-<pid>-a<seq>-<the file's own mode, octal>.
const adoptTag = "a"

// ErrNotAdoptable is returned (wrapped) when a file cannot be adopted; the
// caller stores a copy instead.
var ErrNotAdoptable = errors.New("cannot adopt")

// Adopt stores the open regular file f by taking its own inode into the
// store, not a copy: f is hashed, made read-only with the blob's mode, and
// linked under a temp name that the next Flush publishes. No byte is
// written. The caller must have made sure nobody can change the file from
// the first byte hashed on: it holds a write lease (no other opener, no
// writable mapping), the file has one link (the chmod changes only it) and
// lies on the store's filesystem. mode is the file's mode, restored if the
// adoption fails half-way.
//
// Content already stored or pending is not linked: New is false, and the
// file is left as it was.
func (b *Batch) Adopt(ctx context.Context, f *os.File, mode uint32, exec bool) (PutResult, error) {
	bp := b.s.bufs.Get().(*[]byte)
	k, err := hashAll(ctx, f, exec, *bp)
	b.s.bufs.Put(bp)
	if err != nil {
		return PutResult{}, err
	}
	if b.has(k) {
		return PutResult{Key: k}, nil
	}
	fd := int(f.Fd())
	if mode != k.Mode() {
		setAdoptedMode(fd, mode)
	}
	if err := unix.Fchmod(fd, k.Mode()); err != nil {
		return PutResult{}, fmt.Errorf("%w: chmod: %v", ErrNotAdoptable, err)
	}
	// The temp name carries the file's own mode: if this process dies
	// before the batch publishes it, CleanTemps gives it back.
	name := filepath.Join(b.s.root, tmpDir, b.s.tempPrefix+adoptTag+strconv.FormatUint(b.s.tempSeq.Add(1), 36)+
		"-"+strconv.FormatUint(uint64(mode&0o7777), 8))
	if err := linkFD(fd, name); err != nil {
		unix.Fchmod(fd, mode)
		return PutResult{}, fmt.Errorf("%w: link into the store: %v", ErrNotAdoptable, err)
	}
	pr, err := b.add(k, sealed{name: name, disk: b.s.fdDiskBytes(f)}, 0)
	if err == nil && !pr.New {
		// Another file of this batch with the same content came first:
		// this one stays the user's.
		unix.Fchmod(fd, mode)
	}
	return pr, err
}

// hashAll hashes the whole of f from its first byte, reading through buf
// (a pooled buffer: a fresh 1 MiB per file cost more than the hashing, in
// allocation and zeroing, measured on the npm fixture).
func hashAll(ctx context.Context, f *os.File, exec bool, buf []byte) (Key, error) {
	h := NewHasher()
	r := io.NewSectionReader(f, 0, 1<<62)
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return Key{}, err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		size += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return Key{}, fmt.Errorf("read: %w", err)
		}
	}
	k := Key{Size: size, Exec: exec}
	h.Sum(k.Sum[:0])
	return k, nil
}

// Dev is the device number of the store's filesystem: only a file on it can
// be adopted.
func (s *Store) Dev() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(s.root, tmpDir), &st); err != nil {
		return 0, err
	}
	return uint64(st.Dev), nil
}
