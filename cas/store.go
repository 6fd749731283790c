package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/internal/atomicfile"
)

// smallBlob is the size up to which Put reads a blob into memory first, so
// that content already in the store costs one read and no write. Larger
// content streams through a temp file and is never held in memory.
const smallBlob = 1 << 20

const (
	tmpDir     = "tmp"
	corruptDir = "corrupt"
)

// Options tune a store's on-disk permissions.
type Options struct {
	// DirMode is the mode of the blake3/ fan-out directories. Direct mode
	// uses 0755; a shared daemon store uses 0711 so that it cannot be
	// listed while every blob stays reachable by name.
	DirMode fs.FileMode
	// Owner records which mode manages a new store ("daemon" or
	// "direct"), in <root>/owner: the two keep their GC roots in different
	// places, so one must not collect the other's store. An existing
	// store keeps what it recorded.
	Owner string
	// KeepTotals has the store keep its blob counts (see Totals), loaded
	// from the totals it keeps on disk (see ledger), which every change
	// this process makes updates. TotalsTrusted says whether they could be
	// loaded; if not, the opener recounts once it holds the store's lock.
	// Close saves them.
	KeepTotals bool
}

// Owners of a store.
const (
	OwnerDaemon = "daemon"
	OwnerDirect = "direct"
)

const ownerFile = "owner"

// Store is a content-addressed blob store rooted at one directory.
// Its methods are safe for concurrent use by many goroutines and processes.
type Store struct {
	root    string
	dirMode fs.FileMode
	bufs    sync.Pool
	// tempPrefix names this process's temp files (see CleanTemps).
	tempPrefix string
	tempSeq    atomic.Uint64
	// fanout remembers the blake3/ab/cd directories known to exist, so a
	// put into one costs no mkdir and no failed rename: one bit for each
	// of the 65,536 (ab, cd). A sync.Map of their paths held 13-14 MB
	// once a 1M-blob ingest had made them all (issue 22).
	fanout [1 << 16 / 64]atomic.Uint64
	// chmodDirs is set when the umask would strip bits from dirMode,
	// chmodBlobs when it would strip bits of a blob's mode (0444, 0555):
	// otherwise a temp file is created with its blob's final mode, and
	// sealing it costs no fchmod (one syscall of the ~10 a small put
	// makes; 22k of them in a cold pull of the npm fixture).
	chmodDirs, chmodBlobs bool
	owner                 string
	// totals and ledger are nil unless Options.KeepTotals.
	totals  *Totals
	ledger  *ledger
	trusted atomic.Bool
	// epochMu serialises BumpEpoch.
	epochMu sync.Mutex
}

// Open opens the store at root, creating its skeleton if needed.
func Open(root string, opts Options) (*Store, error) {
	if opts.DirMode == 0 {
		opts.DirMode = 0o755
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	s := &Store{root: abs, dirMode: opts.DirMode, tempPrefix: tempPrefix(), chmodDirs: umaskStrips(opts.DirMode),
		chmodBlobs: umaskStrips(0o555)}
	s.bufs.New = func() any { b := make([]byte, smallBlob+1); return &b }
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.mkdir(filepath.Join(abs, HashDir)); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := os.Mkdir(filepath.Join(abs, tmpDir), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.claim(opts.Owner); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// A store the other mode owns (root running --direct verify on the
	// daemon's store) keeps no totals here: files this process made in
	// it (totals.lock, writers/) would be its, not the owner's.
	if ReadEpoch(abs) == "" && (s.owner == opts.Owner || opts.Owner == "") {
		// A store made before the epoch, or new: no manifest records
		// this one yet, so any fresh token is right.
		if err := s.BumpEpoch(); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if opts.KeepTotals && (s.owner == opts.Owner || opts.Owner == "") {
		s.totals = &Totals{}
		s.ledger = &ledger{s: s}
		c, trusted := s.ledger.load()
		s.totals.named.add(c.Blobs, c.Bytes, c.DiskBytes)
		s.trusted.Store(trusted)
	}
	return s, nil
}

// claim reads the store's owner, recording owner if none is recorded yet.
func (s *Store) claim(owner string) error {
	p := filepath.Join(s.root, ownerFile)
	b, err := os.ReadFile(p)
	if err == nil {
		s.owner = strings.TrimSpace(string(b))
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) || owner == "" {
		return nil // unreadable or not claimed: unknown owner
	}
	if err := atomicfile.Write(p, []byte(owner+"\n"), 0o444); err != nil {
		return err
	}
	s.owner = owner
	return nil
}

// Owner is the mode that manages the store (OwnerDaemon, OwnerDirect), or
// "" when the store records none.
func (s *Store) Owner() string { return s.owner }

// Root is the store's absolute root directory.
func (s *Store) Root() string { return s.root }

// Path is the absolute path of the blob named by k.
func (s *Store) Path(k Key) string { return BlobPath(s.root, k) }

// BlobPath is where the blob k lies in the store rooted at root: what a
// projection points at, for code that knows the store only by its root
// (a daemon's store, which the client cannot open as a Store).
func BlobPath(root string, k Key) string { return root + "/" + k.RelPath() }

// Has reports whether the blob named by k is present.
func (s *Store) Has(k Key) bool {
	_, err := os.Lstat(s.Path(k))
	return err == nil
}

// OpenBlob opens the blob named by k for reading.
func (s *Store) OpenBlob(k Key) (*os.File, error) { return os.Open(s.Path(k)) }

// PutResult says what Put stored.
type PutResult struct {
	Key Key
	// New is true when this call added the blob; false when identical
	// content was already present (deduplicated).
	New bool
}

// Put stores the content of r as a blob, executable when exec is set, and
// returns its key. Content already present is deduplicated and never
// rewritten. The bytes hashed are exactly the bytes stored, so a reader that
// changes underneath cannot produce a blob whose name does not match it.
// The blob is durable when Put returns.
func (s *Store) Put(ctx context.Context, r io.Reader, exec bool) (PutResult, error) {
	tmp, k, err := s.write(ctx, r, exec, s.Has)
	if err != nil || tmp == nil {
		return PutResult{Key: k}, s.full(err)
	}
	res, err := s.commit(tmp, k)
	return res, s.full(err)
}

// write copies r into a temp file and returns it with the content's key, or
// a nil file when present(key) says the content is already stored.
func (s *Store) write(ctx context.Context, r io.Reader, exec bool, present func(Key) bool) (*os.File, Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, Key{}, err
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return s.writeSmall(buf[:n], exec, present)
	case err != nil:
		return nil, Key{}, fmt.Errorf("put: read: %w", err)
	}
	return s.writeStream(ctx, buf[:n], r, exec, present)
}

func (s *Store) writeSmall(data []byte, exec bool, present func(Key) bool) (*os.File, Key, error) {
	h := NewHasher()
	h.Write(data)
	k := Key{Size: int64(len(data)), Exec: exec}
	h.Sum(k.Sum[:0])
	if present(k) {
		return nil, k, nil
	}
	tmp, err := s.createTemp(exec)
	if err != nil {
		return nil, k, err
	}
	if _, err := tmp.Write(data); err != nil {
		err = s.full(fmt.Errorf("put %s: write: %w", k, err))
		discard(tmp)
		return nil, k, err
	}
	return tmp, k, nil
}

var zeroChunk [64 << 10]byte

// writeStream copies head and the rest of r into a temp file, hashing as it
// goes. Runs of zeros become holes, so a sparse input stays sparse.
func (s *Store) writeStream(ctx context.Context, head []byte, r io.Reader, exec bool, present func(Key) bool) (*os.File, Key, error) {
	tmp, err := s.createTemp(exec)
	if err != nil {
		return nil, Key{}, err
	}
	fail := func(err error) (*os.File, Key, error) {
		err = s.full(err) // figures taken while the temp still holds its space
		discard(tmp)
		return nil, Key{}, err
	}
	h := NewHasher()
	var size int64
	write := func(p []byte) error {
		h.Write(p)
		for len(p) > 0 {
			n := min(len(p), len(zeroChunk))
			chunk := p[:n]
			if bytes.Equal(chunk, zeroChunk[:n]) {
				if _, err := tmp.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := tmp.Write(chunk); err != nil {
				return err
			}
			size += int64(n)
			p = p[n:]
		}
		return nil
	}
	buf := head[:cap(head)]
	p := head
	for {
		if err := write(p); err != nil {
			return fail(fmt.Errorf("put: write temp: %w", err))
		}
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		n, err := io.ReadFull(r, buf)
		p = buf[:n]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if err := write(p); err != nil {
				return fail(fmt.Errorf("put: write temp: %w", err))
			}
			break
		}
		if err != nil {
			return fail(fmt.Errorf("put: read: %w", err))
		}
	}
	// Seeks past trailing zeros leave the file short of its size.
	if err := tmp.Truncate(size); err != nil {
		return fail(fmt.Errorf("put: truncate temp: %w", err))
	}
	k := Key{Size: size, Exec: exec}
	h.Sum(k.Sum[:0])
	if present(k) {
		discard(tmp)
		return nil, k, nil
	}
	return tmp, k, nil
}

// createTemp makes a temp file for a put of a blob (executable if exec),
// with the blob's final mode: the descriptor is writable whatever the mode
// says. It opens with unix.Open rather than os.CreateTemp: a regular file
// needs none of the poller set-up os.Open does, and puts are a per-file
// hot path.
func (s *Store) createTemp(exec bool) (*os.File, error) {
	mode := Key{Exec: exec}.Mode()
	for {
		name := filepath.Join(s.root, tmpDir, s.tempPrefix+strconv.FormatUint(s.tempSeq.Add(1), 36))
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, mode)
		if err == unix.EEXIST {
			continue // left by an earlier process with a recycled pid
		}
		if err != nil {
			return nil, fmt.Errorf("put: create temp: %w", err)
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

// commit makes tmp durable and read-only, then gives it k's name unless a
// blob of that name already exists. It consumes tmp.
func (s *Store) commit(tmp *os.File, k Key) (PutResult, error) {
	if err := tmp.Sync(); err != nil {
		err = s.full(fmt.Errorf("put %s: fsync: %w", k, err))
		discard(tmp)
		return PutResult{}, err
	}
	sl, err := s.seal(tmp, k)
	if err != nil {
		return PutResult{}, err
	}
	added, err := s.publish(sl.name, k)
	s.totals.added(s, k, sl.disk, added)
	s.ledger.save(false)
	return PutResult{Key: k, New: added}, err
}

// sealed is a put's temp file, complete and read-only, waiting for its
// name: its path, and the disk bytes it takes (for the store's totals; -1
// when unknown).
type sealed struct {
	name string
	disk int64
}

// seal makes tmp read-only with k's mode (createTemp gave it that mode
// unless the umask stripped bits) and closes it.
func (s *Store) seal(tmp *os.File, k Key) (sealed, error) {
	if s.chmodBlobs {
		if err := tmp.Chmod(fs.FileMode(k.Mode())); err != nil {
			discard(tmp)
			return sealed{}, fmt.Errorf("put %s: chmod: %w", k, err)
		}
	}
	sl := sealed{name: tmp.Name(), disk: s.fdDiskBytes(tmp)}
	if err := tmp.Close(); err != nil {
		os.Remove(sl.name)
		return sealed{}, fmt.Errorf("put %s: close: %w", k, err)
	}
	return sl, nil
}

// publish renames the sealed, durable temp file at name to k's blob path,
// unless that blob already exists, and reports whether it added the blob.
func (s *Store) publish(name string, k Key) (bool, error) {
	final := s.Path(k)
	dir := filepath.Dir(final)
	fan := int(k.Sum[0])<<8 | int(k.Sum[1])
	word, bit := &s.fanout[fan/64], uint64(1)<<(fan%64)
	if word.Load()&bit == 0 {
		if err := s.mkdirFanout(dir); err != nil {
			os.Remove(name)
			return false, fmt.Errorf("put %s: %w", k, err)
		}
		word.Or(bit)
	}
	s.ledger.register() // before the name can appear (see ledger)
	err := renameNoReplace(name, final)
	if errors.Is(err, syscall.ENOENT) {
		// The directory went away behind the cache's back.
		if err = s.mkdirFanout(dir); err == nil {
			err = renameNoReplace(name, final)
		}
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EEXIST):
		// Another writer stored the same content first.
		os.Remove(name)
		return false, nil
	default:
		os.Remove(name)
		return false, fmt.Errorf("put %s: %w", k, err)
	}
}

// mkdirFanout creates blake3/ab/cd (and blake3/ab) with the store's mode.
func (s *Store) mkdirFanout(dir string) error {
	if err := s.mkdir(dir); errors.Is(err, fs.ErrNotExist) {
		if err := s.mkdir(filepath.Dir(dir)); err != nil {
			return err
		}
		return s.mkdir(dir)
	} else {
		return err
	}
}

// mkdir creates dir with the store's directory mode regardless of umask;
// an existing directory is fine.
func (s *Store) mkdir(dir string) error {
	err := os.Mkdir(dir, s.dirMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil || !s.chmodDirs {
		return err
	}
	return os.Chmod(dir, s.dirMode)
}

func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}
