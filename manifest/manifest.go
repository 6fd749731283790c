package manifest

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"golang.org/x/sys/unix"
)

// FormatVersion is the manifest schema version written into Meta.
const FormatVersion = 1

// Dir and file names of a project's manifest.
const (
	DirName  = ".vrift"
	FileName = "manifest.lmdb"
)

// PathFor is the manifest path of the project rooted at root.
func PathFor(root string) string { return filepath.Join(root, DirName, FileName) }

const (
	entriesDB = "entries"
	metaDB    = "meta"
	metaKey   = "meta"
	// mapSize bounds the manifest's size; the file grows only as written.
	mapSize = 1 << 36
)

// Meta describes a manifest as a whole.
type Meta struct {
	Version int `json:"version"`
	// Root is the absolute project root the keys are relative to.
	Root string `json:"root"`
	// Subtrees are the keys of the ingested directories.
	Subtrees []string `json:"subtrees"`
	// Store is the store root the manifest's projections point into.
	Store string `json:"store,omitempty"`
	// StoreEpoch is the store's removal epoch (cas.ReadEpoch) when the
	// ingest that wrote the manifest began: while the store's is the
	// same, every blob the manifest names is still in the store.
	StoreEpoch string    `json:"store_epoch,omitempty"`
	Totals     Totals    `json:"totals"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Totals count a manifest's entries.
type Totals struct {
	Files       int64 `json:"files"`
	Bytes       int64 `json:"bytes"`
	Unique      int64 `json:"unique"`
	UniqueBytes int64 `json:"unique_bytes"`
	Dirs        int64 `json:"dirs"`
	Symlinks    int64 `json:"symlinks"`
}

// Manifest is an open manifest file.
type Manifest struct {
	path    string
	env     *lmdb.Env
	entries lmdb.DBI
	meta    lmdb.DBI
	// dir is the manifest's directory, held open: the manifest was
	// opened through it, and Discard removes through it.
	dir *os.File

	// idle holds read transactions parked by Lookup (reset, slot kept)
	// for the next Lookup to renew.
	idleMu sync.Mutex
	idle   []*lmdb.Txn

	// mapped is the data file, for dropResident.
	mapped mappedFile
}

// maxIdleReaders bounds the parked read transactions: one per request a
// FUSE view serves at once is plenty (2 cores here; go-fuse runs a few).
const maxIdleReaders = 16

// ErrUnsafe is returned (wrapped) for a manifest vrift will not open as
// asked: a symlink or special file where the manifest or its lock file
// should be, or a manifest directory another user controls opened for
// writing.
var ErrUnsafe = errors.New("unsafe manifest location")

// Create opens the manifest at path for reading and writing, creating it
// (and its directory) if needed. The directory must be a real directory
// (not a symlink) owned by the caller and writable by no one else, and the
// manifest and its lock file regular files or absent: LMDB opens, truncates
// and writes the lock file by path, so a symlink planted there would make
// the caller (root, say) overwrite any file.
func Create(path string) (*Manifest, error) {
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create manifest %s: %w", path, err)
	}
	d, own, err := openDir(dir)
	if err != nil {
		return nil, fmt.Errorf("create manifest %s: %w", path, err)
	}
	if !own {
		d.Close()
		return nil, fmt.Errorf("create manifest %s: %w: %s is owned by another user or writable by others, "+
			"and vrift does not write a manifest another user controls", path, ErrUnsafe, dir)
	}
	return openIn(d, path, 0)
}

// Open opens an existing manifest for reading. A manifest in a directory
// the caller controls is opened in place, lock file and all. One in a
// directory someone else controls (root reading a user's project) is
// opened through a descriptor taken without following symlinks, with no
// lock file at all (MDB_NOLOCK): nothing of it is written, and nothing is
// opened by a path that other user could redirect.
func Open(path string) (*Manifest, error) {
	d, own, err := openDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("open manifest %s: %w", path, err)
	}
	if own {
		if _, err := os.Stat(path); err != nil {
			d.Close()
			return nil, fmt.Errorf("open manifest: %w", err)
		}
		return openIn(d, path, lmdb.Readonly)
	}
	f, err := openFileIn(d, path)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open manifest %s: %w", path, err)
	}
	defer f.Close()
	m, err := open(path, fdPath(int(f.Fd())), lmdb.Readonly|lmdb.NoLock)
	if err != nil {
		d.Close()
		return nil, err
	}
	m.dir = d
	return m, nil
}

// OpenFile opens the manifest file at path for reading its bytes (to pass
// it to the daemon), following no symlink at the file or its directory: a
// planted symlink must not make the caller hand over some other file it
// can read.
func OpenFile(path string) (*os.File, error) {
	d, _, err := openDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return openFileIn(d, path)
}

func openFileIn(d *os.File, path string) (*os.File, error) {
	fd, err := unix.Openat(int(d.Fd()), filepath.Base(path), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symlink", ErrUnsafe, path)
	} else if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	}
	return f, nil
}

// openDir opens a manifest directory without following a symlink and
// reports whether the caller controls it: owns it, and no one else may
// write in it.
func openDir(dir string) (*os.File, bool, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, false, fmt.Errorf("%w: %s is not a directory (a symlink?)", ErrUnsafe, dir)
	}
	if err != nil {
		return nil, false, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	d := os.NewFile(uintptr(fd), dir)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, false, err
	}
	return d, st.Uid == uint32(os.Geteuid()) && st.Mode&0o022 == 0, nil
}

// openIn opens the manifest named path in the directory d, which the caller
// controls: its files are checked to be regular files (or absent), and
// LMDB reaches them through d itself (fdPath), so no rename of a directory
// above can redirect it.
func openIn(d *os.File, path string, flags uint) (*Manifest, error) {
	base := filepath.Base(path)
	lockExisted := false
	for _, name := range []string{base, base + "-lock"} {
		var st unix.Stat_t
		err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			d.Close()
			return nil, fmt.Errorf("open manifest %s: %s is a directory", path, name)
		}
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			d.Close()
			return nil, fmt.Errorf("open manifest %s: %w: %s is not a regular file", path, ErrUnsafe, name)
		}
		lockExisted = err == nil
	}
	m, err := open(path, dirPath(d, base), flags)
	if err != nil {
		if !lockExisted {
			// Not a manifest after all: leave no lock file beside it.
			unix.Unlinkat(int(d.Fd()), base+"-lock", 0)
		}
		d.Close()
		return nil, err
	}
	m.dir = d
	return m, nil
}

func open(path, lmdbPath string, flags uint) (*Manifest, error) {
	env, err := lmdb.NewEnv()
	if err != nil {
		return nil, fmt.Errorf("open manifest %s: %w", path, err)
	}
	m := &Manifest{path: path, env: env}
	fail := func(err error) (*Manifest, error) {
		env.Close()
		return nil, fmt.Errorf("open manifest %s: %w", path, err)
	}
	if err := env.SetMaxDBs(4); err != nil {
		return fail(err)
	}
	if err := env.SetMapSize(mapSize); err != nil {
		return fail(err)
	}
	if err := env.Open(lmdbPath, flags|lmdb.NoSubdir, 0o644); err != nil {
		return fail(err)
	}
	m.noteMapped()
	if flags&lmdb.Readonly != 0 {
		err = env.View(func(txn *lmdb.Txn) (err error) {
			if m.entries, err = txn.OpenDBI(entriesDB, 0); err != nil {
				return err
			}
			m.meta, err = txn.OpenDBI(metaDB, 0)
			return err
		})
	} else {
		err = env.Update(func(txn *lmdb.Txn) (err error) {
			if m.entries, err = txn.CreateDBI(entriesDB); err != nil {
				return err
			}
			m.meta, err = txn.CreateDBI(metaDB)
			return err
		})
	}
	if err != nil {
		if lmdb.IsNotFound(err) {
			err = errors.New("not a vrift manifest (no entries table)")
		}
		return fail(err)
	}
	return m, nil
}

// Discard closes the manifest and deletes it, its lock file and, if then
// empty, its directory, through the directory it was opened in.
func (m *Manifest) Discard() error {
	m.env.Close()
	base := filepath.Base(m.path)
	err := unix.Unlinkat(int(m.dir.Fd()), base, 0)
	unix.Unlinkat(int(m.dir.Fd()), base+"-lock", 0)
	m.dir.Close()
	m.dir = nil
	os.Remove(filepath.Dir(m.path))
	return err
}

// Path is the manifest's file path.
func (m *Manifest) Path() string { return m.path }

// Close releases the manifest. No Lookup may run during or after it.
func (m *Manifest) Close() error {
	m.idleMu.Lock()
	for _, txn := range m.idle {
		txn.Abort()
	}
	m.idle = nil
	m.idleMu.Unlock()
	err := m.env.Close()
	if m.dir != nil {
		m.dir.Close()
		m.dir = nil
	}
	return err
}

// View runs fn with a consistent read-only snapshot.
func (m *Manifest) View(fn func(*Reader) error) error {
	return m.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		return fn(&Reader{m: m, txn: txn})
	})
}

// BeginRead starts a snapshot that stays valid until its Close, for readers
// that cannot run inside a callback. It may be used by one goroutine at a
// time.
func (m *Manifest) BeginRead() (*Reader, error) {
	txn, err := m.env.BeginTxn(nil, lmdb.Readonly)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	txn.RawRead = true
	return &Reader{m: m, txn: txn}, nil
}

// Lookup returns the entry at p in the newest committed snapshot, as
// View+Get would, but without beginning and ending a read transaction per
// call: it renews one parked by an earlier Lookup (mdb_txn_renew keeps the
// reader slot and the transaction's memory; mdb_txn_begin takes the lock
// table's mutex to find a slot and allocates). A FUSE view does one per
// kernel LOOKUP; BenchmarkLookup against BenchmarkViewGet (10k keys):
// 0.59 µs and 2 allocations against 1.24 µs and 4. Safe for concurrent
// use.
func (m *Manifest) Lookup(p string) (Entry, bool, error) {
	txn, err := m.renewReader()
	if err != nil {
		return Entry{}, false, err
	}
	r := Reader{m: m, txn: txn}
	e, ok, err := r.Get(p)
	m.parkReader(txn)
	return e, ok, err
}

// Children is Reader.Children in the newest committed snapshot, on a
// renewed read transaction as Lookup.
func (m *Manifest) Children(dir string, fn func(name string, e Entry) error) error {
	txn, err := m.renewReader()
	if err != nil {
		return err
	}
	r := Reader{m: m, txn: txn}
	err = r.Children(dir, fn)
	m.parkReader(txn)
	return err
}

func (m *Manifest) renewReader() (*lmdb.Txn, error) {
	m.idleMu.Lock()
	var txn *lmdb.Txn
	if n := len(m.idle); n > 0 {
		txn = m.idle[n-1]
		m.idle = m.idle[:n-1]
	}
	m.idleMu.Unlock()
	if txn != nil {
		if err := txn.Renew(); err == nil {
			return txn, nil
		}
		txn.Abort()
	}
	txn, err := m.env.BeginTxn(nil, lmdb.Readonly)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	txn.RawRead = true
	return txn, nil
}

// parkReader ends txn's snapshot (so it holds back no page a writer could
// reuse) and keeps it for renewReader.
func (m *Manifest) parkReader(txn *lmdb.Txn) {
	txn.Reset()
	m.idleMu.Lock()
	if len(m.idle) < maxIdleReaders {
		m.idle = append(m.idle, txn)
		txn = nil
	}
	m.idleMu.Unlock()
	if txn != nil {
		txn.Abort()
	}
}

// Version identifies the last committed write: it changes whenever the
// manifest does (a re-ingest), in this process or another. Reading it
// touches only the lock table or the meta pages, no transaction.
func (m *Manifest) Version() (int64, error) {
	info, err := m.env.Info()
	if err != nil {
		return 0, fmt.Errorf("manifest version: %w", err)
	}
	return info.LastTxnID, nil
}

// Update runs fn in a write transaction, committed atomically (and durably)
// when fn returns nil and discarded otherwise.
func (m *Manifest) Update(fn func(*Writer) error) error {
	err := m.env.Update(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		return fn(&Writer{Reader{m: m, txn: txn}})
	})
	m.dropResident()
	return err
}

// Reader reads one snapshot of a manifest.
type Reader struct {
	m   *Manifest
	txn *lmdb.Txn
	// read counts the entries this reader's scans have read: every
	// scanBatch of them, the manifest's pages are dropped from the
	// resident set. Lookups (Get) do not count: a re-ingest's walk looks
	// up every entry in about key order, and a drop every 4,096 of them
	// made a 300k-file tier1 re-ingest 15-18% slower (0.61 s against 0.52
	// s, 6 rounds); a caller that reads most of the manifest by lookups
	// calls DropResident itself.
	read int
}

// DropResident takes the manifest's pages out of this process's resident
// set now. A scan does so by itself (Reader.read); a caller that looks up
// or writes much of the manifest calls this as it goes. The vouching after
// a 1M-file tier1 ingest's swap looks up every symlink's entry and then
// writes one record a directory, each write mapping up to 64 KB around it
// (the kernel's fault-around): the ingest ended with 147 MB of the
// manifest resident, 11 MB once the vouching dropped as it went. Dropping
// often costs: 300k lookups in key order took 0.34 µs each without drops,
// 0.36 µs with one every 4,096, 0.9 µs every 256.
func (r *Reader) DropResident() { r.m.dropResident() }

// noteRead counts one entry a scan read (see Reader.read).
func (r *Reader) noteRead() {
	if r.read++; r.read%scanBatch == 0 {
		r.m.dropResident()
	}
}

// TxnID is the id of the committed state a Reader sees; a Writer's is the
// id its commit will have. A writer whose id is a reader's plus one knows
// that nothing was committed in between.
func (r *Reader) TxnID() uint64 { return uint64(r.txn.ID()) }

// Close ends a snapshot started by BeginRead.
func (r *Reader) Close() { r.txn.Abort() }

// Get returns the entry at p.
func (r *Reader) Get(p string) (Entry, bool, error) {
	v, err := r.txn.Get(r.m.entries, []byte(p))
	if lmdb.IsNotFound(err) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("manifest get %q: %w", p, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return Entry{}, false, fmt.Errorf("manifest entry %q: %w", p, err)
	}
	return e, true, nil
}

// Walk calls fn for subtree and every entry below it, parents before
// children. A subtree of "." walks everything. The path passed to fn is only
// valid during the call when it comes from the map; fn must copy it to keep
// it (Go strings built here are already copies).
func (r *Reader) Walk(subtree string, fn func(p string, e Entry) error) error {
	if subtree == "" {
		subtree = RootPath
	}
	if e, ok, err := r.Get(subtree); err != nil {
		return err
	} else if ok {
		if err := fn(subtree, e); err != nil {
			return err
		}
	}
	return r.scanBelow(subtree, func(_ *lmdb.Cursor, k, v []byte) error {
		if string(k) == RootPath {
			return nil
		}
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("manifest entry %q: %w", k, err)
		}
		return fn(string(k), e)
	})
}

// scanBatch is how many entries a scan reads between dropResident calls:
// about 2-4 MB of manifest pages.
const scanBatch = 4096

// scanBelow calls fn for every key strictly below subtree ("." for all),
// in key order, with the cursor positioned on it.
func (r *Reader) scanBelow(subtree string, fn func(cur *lmdb.Cursor, k, v []byte) error) error {
	cur, err := r.txn.OpenCursor(r.m.entries)
	if err != nil {
		return fmt.Errorf("manifest scan: %w", err)
	}
	defer cur.Close()
	var prefix []byte
	op := uint(lmdb.First)
	if subtree != RootPath && subtree != "" {
		prefix = []byte(subtree + "/")
		op = lmdb.SetRange
	}
	for k, v, err := cur.Get(prefix, nil, op); ; k, v, err = cur.Get(nil, nil, lmdb.Next) {
		r.noteRead()
		if lmdb.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("manifest scan: %w", err)
		}
		if !bytes.HasPrefix(k, prefix) {
			return nil
		}
		if err := fn(cur, k, v); err != nil {
			return err
		}
	}
}

// Meta returns the manifest's metadata; a manifest never written has none.
func (r *Reader) Meta() (Meta, error) {
	v, err := r.txn.Get(r.m.meta, []byte(metaKey))
	if lmdb.IsNotFound(err) {
		return Meta{}, nil
	}
	if err != nil {
		return Meta{}, fmt.Errorf("manifest meta: %w", err)
	}
	var meta Meta
	if err := json.Unmarshal(v, &meta); err != nil {
		return Meta{}, fmt.Errorf("manifest meta: %w", err)
	}
	return meta, nil
}

// Writer changes a manifest inside one transaction.
type Writer struct{ Reader }

// Put records e at p.
func (w *Writer) Put(p string, e Entry) error {
	if err := CheckPath(p); err != nil {
		return fmt.Errorf("manifest put: %w", err)
	}
	if err := w.txn.Put(w.m.entries, []byte(p), e.encode(), 0); err != nil {
		return fmt.Errorf("manifest put %q: %w", p, err)
	}
	return nil
}

// PutIfChanged records e at p unless p already holds exactly e, and reports
// whether it wrote. Unchanged trees then cost reads, not page writes.
func (w *Writer) PutIfChanged(p string, e Entry) (bool, error) {
	if err := CheckPath(p); err != nil {
		return false, fmt.Errorf("manifest put: %w", err)
	}
	v := e.encode()
	old, err := w.txn.Get(w.m.entries, []byte(p))
	if err == nil && bytes.Equal(old, v) {
		return false, nil
	}
	if err != nil && !lmdb.IsNotFound(err) {
		return false, fmt.Errorf("manifest get %q: %w", p, err)
	}
	if err := w.txn.Put(w.m.entries, []byte(p), v, 0); err != nil {
		return false, fmt.Errorf("manifest put %q: %w", p, err)
	}
	return true, nil
}

// DeleteUnseen removes every entry at or below subtree for which seen
// returns false, and reports how many it removed.
func (w *Writer) DeleteUnseen(subtree string, seen func(p []byte) bool) (int, error) {
	if subtree != RootPath && subtree != "" {
		if _, err := w.txn.Get(w.m.entries, []byte(subtree)); err == nil && !seen([]byte(subtree)) {
			if err := w.txn.Del(w.m.entries, []byte(subtree), nil); err != nil {
				return 0, err
			}
		}
	}
	n := 0
	err := w.scanBelow(subtree, func(cur *lmdb.Cursor, k, _ []byte) error {
		if seen(k) {
			return nil
		}
		if err := cur.Del(0); err != nil {
			return fmt.Errorf("manifest delete %q: %w", k, err)
		}
		n++
		return nil
	})
	return n, err
}

// SetMeta replaces the manifest's metadata.
func (w *Writer) SetMeta(meta Meta) error {
	meta.Version = FormatVersion
	v, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := w.txn.Put(w.m.meta, []byte(metaKey), v, 0); err != nil {
		return fmt.Errorf("manifest meta: %w", err)
	}
	return nil
}

// Entries is how many entries the manifest holds (directories, files,
// symlinks), from LMDB's own count: no walk.
func (r *Reader) Entries() (int, error) {
	st, err := r.txn.Stat(r.m.entries)
	if err != nil {
		return 0, fmt.Errorf("manifest entries: %w", err)
	}
	return int(st.Entries), nil
}

// Count computes the totals of everything recorded. Distinct contents are
// counted by the first 8 bytes of their hash, with their size: 16 bytes a
// file, sorted once at the end. A map of the 32-byte hashes held 37 MB at
// 1M files, inside the ingest's write transaction, when the transaction's
// dirty pages are held too (issue 22). Two contents whose hashes share 8
// leading bytes (BLAKE3: about one chance in 2^65 per pair, 3e-8 at 1M
// files) would count as one in Unique and UniqueBytes; the totals are
// figures for people, nothing is kept or dropped by them.
func (r *Reader) Count() (Totals, error) {
	var t Totals
	type content struct {
		h    uint64
		size int64
	}
	var files []content
	if n, err := r.Entries(); err == nil {
		files = make([]content, 0, n) // files and more
	}
	err := r.Walk(RootPath, func(_ string, e Entry) error {
		switch e.Kind {
		case Dir:
			t.Dirs++
		case Symlink:
			t.Symlinks++
		case File:
			t.Files++
			t.Bytes += e.Size
			files = append(files, content{binary.LittleEndian.Uint64(e.Sum[:8]), e.Size})
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	slices.SortFunc(files, func(a, b content) int { return cmp.Compare(a.h, b.h) })
	for i, f := range files {
		if i == 0 || f.h != files[i-1].h {
			t.Unique++
			t.UniqueBytes += f.size
		}
	}
	return t, nil
}

// Children calls fn for each direct child of dir, in key order, without
// visiting grandchildren: on meeting a child's subtree (one contiguous key
// range, "x/" up to "x0") it seeks past it, so listing a directory costs
// about its children, not its subtree.
func (r *Reader) Children(dir string, fn func(name string, e Entry) error) error {
	cur, err := r.txn.OpenCursor(r.m.entries)
	if err != nil {
		return fmt.Errorf("manifest children: %w", err)
	}
	defer cur.Close()
	var prefix []byte
	op := uint(lmdb.First)
	if dir != RootPath && dir != "" {
		prefix = []byte(dir + "/")
		op = lmdb.SetRange
	}
	seek := prefix
	for k, v, err := cur.Get(seek, nil, op); ; k, v, err = cur.Get(seek, nil, op) {
		if lmdb.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("manifest children: %w", err)
		}
		if !bytes.HasPrefix(k, prefix) {
			return nil
		}
		rest := k[len(prefix):]
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			// A descendant of child rest[:i], reached because keys such
			// as "a-b" sort between "a" and "a/...": skip that subtree.
			seek = append(append(append([]byte{}, prefix...), rest[:i]...), '/'+1)
			op = lmdb.SetRange
			continue
		}
		op, seek = lmdb.Next, nil
		if string(k) == RootPath {
			continue
		}
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("manifest entry %q: %w", k, err)
		}
		if err := fn(string(rest), e); err != nil {
			return err
		}
	}
}
