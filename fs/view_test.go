package fs

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// These tests drive the view through go-fuse's raw protocol layer (the
// calls the kernel's requests become) without mounting anything, so they
// need neither root nor /dev/fuse. Kernel notifications go to notes.

// notes records the cache notifications the view sends the kernel.
type notes struct {
	mu      sync.Mutex
	entries []string // "parentNodeID/name"
	inodes  []uint64
}

func (n *notes) DeleteNotify(parent, child uint64, name string) fuse.Status { return fuse.OK }
func (n *notes) EntryNotify(parent uint64, name string) fuse.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.entries = append(n.entries, name)
	return fuse.OK
}
func (n *notes) InodeNotify(node uint64, off, length int64) fuse.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.inodes = append(n.inodes, node)
	return fuse.OK
}
func (n *notes) InodeRetrieveCache(node uint64, offset int64, dest []byte) (int, fuse.Status) {
	return 0, fuse.ENOSYS
}
func (n *notes) InodeNotifyStoreCache(node uint64, offset int64, data []byte) fuse.Status {
	return fuse.OK
}
func (n *notes) take() (entries []string, inodes []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	entries, inodes = n.entries, n.inodes
	n.entries, n.inodes = nil, nil
	sort.Strings(entries)
	return entries, inodes
}

type viewFixture struct {
	t     *testing.T
	m     *manifest.Manifest
	store string
	v     *View
	raw   fuse.RawFileSystem
	root  gofs.InodeEmbedder
	notes *notes
}

// fileEntry stores content as a blob under store and returns its entry.
func fileEntry(t *testing.T, store, content string, mode uint32) manifest.Entry {
	t.Helper()
	h := cas.NewHasher()
	h.Write([]byte(content))
	e := manifest.Entry{Kind: manifest.File, Mode: mode, MTime: 1_700_000_000_123_456_789, Size: int64(len(content))}
	copy(e.Sum[:], h.Sum(nil))
	p := cas.BlobPath(store, e.Key())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o444); err != nil && !os.IsPermission(err) {
		t.Fatal(err)
	}
	return e
}

func put(t *testing.T, m *manifest.Manifest, entries map[string]manifest.Entry) {
	t.Helper()
	err := m.Update(func(w *manifest.Writer) error {
		for k, e := range entries {
			if err := w.Put(k, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newViewFixture records lib/{a.txt,run.sh,link,sub/b.txt} and serves the
// subtree lib through a go-fuse bridge that is not mounted.
func newViewFixture(t *testing.T) *viewFixture {
	t.Helper()
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	m, err := manifest.Create(filepath.Join(dir, manifest.DirName, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	d := manifest.Entry{Kind: manifest.Dir, Mode: 0o755, MTime: 1_700_000_000_000_000_000}
	put(t, m, map[string]manifest.Entry{
		"lib":           d,
		"lib/a.txt":     fileEntry(t, store, "alpha\n", 0o644),
		"lib/run.sh":    fileEntry(t, store, "#!/bin/sh\n", 0o755),
		"lib/link":      {Kind: manifest.Symlink, Mode: 0o777, Target: []byte("a.txt")},
		"lib/sub":       d,
		"lib/sub/b.txt": fileEntry(t, store, "beta\n", 0o644),
		"other.txt":     fileEntry(t, store, "not in the view\n", 0o644),
	})
	v, err := NewView(m, ViewOptions{StoreRoot: store, Subtree: "lib"})
	if err != nil {
		t.Fatal(err)
	}
	f := &viewFixture{t: t, m: m, store: store, v: v, notes: &notes{}}
	opts := v.Options("test")
	opts.ServerCallbacks = f.notes
	f.root = v.Root()
	f.raw = gofs.NewNodeFS(f.root, opts)
	return f
}

func (f *viewFixture) lookup(parent uint64, name string) (fuse.EntryOut, fuse.Status) {
	var out fuse.EntryOut
	st := f.raw.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out)
	return out, st
}

func (f *viewFixture) mustLookup(parent uint64, name string) fuse.EntryOut {
	f.t.Helper()
	out, st := f.lookup(parent, name)
	if !st.Ok() || out.NodeId == 0 {
		f.t.Fatalf("lookup %q: %v (node %d)", name, st, out.NodeId)
	}
	return out
}

// read opens node, reads it whole and releases it.
func (f *viewFixture) read(node uint64) (string, uint32) {
	f.t.Helper()
	var oo fuse.OpenOut
	if st := f.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}, Flags: syscall.O_RDONLY}, &oo); !st.Ok() {
		f.t.Fatalf("open node %d: %v", node, st)
	}
	defer f.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh})
	buf := make([]byte, 4096)
	res, st := f.raw.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh, Size: 4096}, buf)
	if !st.Ok() {
		f.t.Fatalf("read node %d: %v", node, st)
	}
	b, _ := res.Bytes(buf)
	out := string(b)
	res.Done()
	return out, oo.OpenFlags
}

func TestViewLookupAttrsAndTimeouts(t *testing.T) {
	f := newViewFixture(t)
	a := f.mustLookup(1, "a.txt")
	if a.Attr.Mode != syscall.S_IFREG|0o644 || a.Attr.Size != 6 || a.Attr.Mtime != 1_700_000_000 || a.Attr.Mtimensec != 123_456_789 {
		t.Errorf("a.txt attrs: mode %o size %d mtime %d.%d", a.Attr.Mode, a.Attr.Size, a.Attr.Mtime, a.Attr.Mtimensec)
	}
	if a.EntryTimeout() != cacheFor || a.AttrTimeout() != cacheFor {
		t.Errorf("a.txt timeouts: entry %v attr %v, want %v", a.EntryTimeout(), a.AttrTimeout(), cacheFor)
	}
	if run := f.mustLookup(1, "run.sh"); run.Attr.Mode != syscall.S_IFREG|0o755 {
		t.Errorf("run.sh mode %o", run.Attr.Mode)
	}
	l := f.mustLookup(1, "link")
	if l.Attr.Mode&syscall.S_IFMT != syscall.S_IFLNK || l.Attr.Size != 5 {
		t.Errorf("link attrs: mode %o size %d", l.Attr.Mode, l.Attr.Size)
	}
	if target, st := f.raw.Readlink(nil, &fuse.InHeader{NodeId: l.NodeId}); !st.Ok() || string(target) != "a.txt" {
		t.Errorf("readlink: %q %v", target, st)
	}
	sub := f.mustLookup(1, "sub")
	if sub.Attr.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		t.Errorf("sub mode %o", sub.Attr.Mode)
	}
	if b := f.mustLookup(sub.NodeId, "b.txt"); b.Attr.Size != 5 {
		t.Errorf("sub/b.txt size %d", b.Attr.Size)
	}

	// A missing name is a cached negative entry: success with node 0 and
	// the long timeout (how FUSE says "ENOENT, and remember it").
	neg, st := f.lookup(1, "index.json")
	if !st.Ok() || neg.NodeId != 0 || neg.EntryTimeout() != cacheFor {
		t.Errorf("missing name: status %v node %d timeout %v; want a negative entry cached for %v", st, neg.NodeId, neg.EntryTimeout(), cacheFor)
	}
	// Outside the subtree is not reachable, not even by a crafted name.
	if out, _ := f.lookup(1, "../other.txt"); out.NodeId != 0 {
		t.Error("lookup of ../other.txt found something")
	}

	var ga fuse.AttrOut
	if st := f.raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: a.NodeId}}, &ga); !st.Ok() || ga.Size != 6 || ga.Timeout() != cacheFor {
		t.Errorf("getattr a.txt: %v size %d timeout %v", st, ga.Size, ga.Timeout())
	}
	if st := f.raw.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: 1}}, &ga); !st.Ok() || ga.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		t.Errorf("getattr root: %v mode %o", st, ga.Mode)
	}
}

func TestViewOpenReadAndWritesRefused(t *testing.T) {
	f := newViewFixture(t)
	a := f.mustLookup(1, "a.txt")
	got, flags := f.read(a.NodeId)
	if got != "alpha\n" {
		t.Errorf("read a.txt: %q", got)
	}
	if flags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Errorf("open flags %#x lack FOPEN_KEEP_CACHE: page cache would be dropped on every open", flags)
	}
	for _, fl := range []uint32{syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDONLY | syscall.O_TRUNC} {
		var oo fuse.OpenOut
		if st := f.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: a.NodeId}, Flags: fl}, &oo); st != fuse.Status(syscall.EROFS) {
			t.Errorf("open flags %#x: %v, want EROFS", fl, st)
		}
	}
	sub := f.mustLookup(1, "sub")
	var oo fuse.OpenOut
	if st := f.raw.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: sub.NodeId}}, &oo); st != fuse.Status(syscall.EISDIR) {
		t.Errorf("open of a directory as a file: %v, want EISDIR", st)
	}
}

// readdir lists node through OPENDIR and READDIRPLUS (or READDIR) and
// returns the open flags and the names.
func (f *viewFixture) readdir(node uint64, plus bool) (uint32, []string) {
	f.t.Helper()
	var oo fuse.OpenOut
	if st := f.raw.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}}, &oo); !st.Ok() {
		f.t.Fatalf("opendir: %v", st)
	}
	defer f.raw.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh})
	var names []string
	off := uint64(0)
	for {
		buf := make([]byte, 4096)
		l := fuse.NewDirEntryList(buf, off)
		in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: node}, Fh: oo.Fh, Offset: off, Size: 4096}
		var st fuse.Status
		if plus {
			st = f.raw.ReadDirPlus(nil, in, l)
		} else {
			st = f.raw.ReadDir(nil, in, l)
		}
		if !st.Ok() {
			f.t.Fatalf("readdir: %v", st)
		}
		got := parseDirents(l.Bytes(), plus)
		if len(got) == 0 {
			break
		}
		for _, d := range got {
			names = append(names, d.name)
			off = d.off
		}
	}
	return oo.OpenFlags, names
}

type dirent struct {
	name string
	off  uint64
}

// parseDirents decodes struct fuse_dirent records (each after a struct
// fuse_entry_out for READDIRPLUS).
func parseDirents(b []byte, plus bool) []dirent {
	const entryOutSize = 128 // sizeof(struct fuse_entry_out)
	var out []dirent
	for len(b) > 0 {
		if plus {
			b = b[entryOutSize:]
		}
		off := le64(b[8:])
		namelen := int(le32(b[16:]))
		name := string(b[24 : 24+namelen])
		rec := (24 + namelen + 7) &^ 7
		out = append(out, dirent{name, off})
		b = b[rec:]
	}
	return out
}

func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func TestViewReaddirPlusCachesAndFillsEntries(t *testing.T) {
	f := newViewFixture(t)
	flags, names := f.readdir(1, true)
	if want := []string{"a.txt", "link", "run.sh", "sub"}; !equalStrings(names, want) {
		t.Fatalf("readdirplus of lib: %v, want %v", names, want)
	}
	if flags&fuse.FOPEN_CACHE_DIR == 0 || flags&fuse.FOPEN_KEEP_CACHE == 0 {
		t.Errorf("opendir flags %#x: want FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE so the kernel keeps the listing", flags)
	}
	// READDIRPLUS registered every child with its entry: the kernel may
	// use them without a LOOKUP each.
	kids := f.root.EmbeddedInode().Children()
	if len(kids) != 4 {
		t.Fatalf("after readdirplus the view knows %d children, want 4", len(kids))
	}
	a := kids["a.txt"].Operations().(*node)
	if e := a.e.Load(); e == nil || e.Size != 6 || a.key != "lib/a.txt" {
		t.Errorf("a.txt node after readdirplus: key %q entry %+v", a.key, e)
	}
	if kids["sub"].StableAttr().Mode != syscall.S_IFDIR || kids["link"].StableAttr().Mode != syscall.S_IFLNK {
		t.Error("readdirplus gave children the wrong kinds")
	}
	// The names readdirplus registered are the nodes LOOKUP returns.
	if got := f.mustLookup(1, "a.txt"); got.NodeId != kids["a.txt"].StableAttr().Ino && got.Attr.Ino != kids["a.txt"].StableAttr().Ino {
		t.Errorf("lookup after readdirplus: ino %d, readdirplus ino %d", got.Attr.Ino, kids["a.txt"].StableAttr().Ino)
	}
	_, plain := f.readdir(1, false)
	if !equalStrings(plain, names) {
		t.Errorf("readdir %v differs from readdirplus %v", plain, names)
	}
	sub := f.mustLookup(1, "sub")
	if _, got := f.readdir(sub.NodeId, true); !equalStrings(got, []string{"b.txt"}) {
		t.Errorf("readdirplus of lib/sub: %v", got)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestViewInvalidateAfterReingest: the manifest changes under a live view
// (a re-ingest): the changed file, the name that was missing and every
// listing are invalidated in the kernel, nothing else, and the view serves
// the new entries.
func TestViewInvalidateAfterReingest(t *testing.T) {
	f := newViewFixture(t)
	a := f.mustLookup(1, "a.txt")
	f.mustLookup(1, "run.sh")
	sub := f.mustLookup(1, "sub")
	f.mustLookup(sub.NodeId, "b.txt")
	for _, name := range []string{"new.js", "never.js"} {
		if out, _ := f.lookup(1, name); out.NodeId != 0 {
			t.Fatalf("%s found before it was added", name)
		}
	}
	if got, _ := f.read(a.NodeId); got != "alpha\n" {
		t.Fatalf("a.txt before: %q", got)
	}
	if sent := f.v.invalidate(f.root.EmbeddedInode()); sent != 2 {
		// Nothing changed: only the two known directories' listings.
		t.Errorf("invalidate of an unchanged manifest sent %d notifications, want 2", sent)
	}
	f.notes.take()

	v0, err := f.m.Version()
	if err != nil {
		t.Fatal(err)
	}
	put(t, f.m, map[string]manifest.Entry{
		"lib/a.txt":  fileEntry(t, f.store, "ALPHA, re-ingested\n", 0o644),
		"lib/new.js": fileEntry(t, f.store, "module.exports = 1\n", 0o644),
	})
	if v1, _ := f.m.Version(); v1 == v0 {
		t.Fatal("manifest version unchanged after a write: watch would never see a re-ingest")
	}
	f.v.invalidate(f.root.EmbeddedInode())
	entries, inodes := f.notes.take()
	if want := []string{"a.txt", "new.js"}; !equalStrings(entries, want) {
		t.Errorf("entries invalidated: %v, want %v (run.sh, sub, b.txt unchanged; never.js still missing)", entries, want)
	}
	has := func(id uint64) bool {
		for _, x := range inodes {
			if x == id {
				return true
			}
		}
		return false
	}
	if !has(1) || !has(sub.NodeId) || !has(a.NodeId) {
		t.Errorf("inodes invalidated %v: want the root (1), sub (%d) and a.txt (%d)", inodes, sub.NodeId, a.NodeId)
	}
	if len(inodes) != 3 {
		t.Errorf("inodes invalidated %v: want only root, sub and a.txt", inodes)
	}

	// The kernel now asks again, and gets the new manifest.
	a2 := f.mustLookup(1, "a.txt")
	if a2.Attr.Size != uint64(len("ALPHA, re-ingested\n")) {
		t.Errorf("a.txt size after re-ingest: %d", a2.Attr.Size)
	}
	if got, _ := f.read(a2.NodeId); got != "ALPHA, re-ingested\n" {
		t.Errorf("a.txt after re-ingest: %q", got)
	}
	// New content is a new node (a new kernel inode, with its own
	// passthrough backing file); the old node, which opens made before the
	// re-ingest may still hold, stays what it was.
	if a2.NodeId == a.NodeId {
		t.Errorf("a.txt after re-ingest has its old node id %d", a.NodeId)
	}
	if got, _ := f.read(a.NodeId); got != "alpha\n" {
		t.Errorf("a.txt by its old node id after re-ingest: %q", got)
	}
	if n := f.mustLookup(1, "new.js"); n.Attr.Size != uint64(len("module.exports = 1\n")) {
		t.Errorf("new.js size %d", n.Attr.Size)
	}
	if _, names := f.readdir(1, true); !equalStrings(names, []string{"a.txt", "link", "new.js", "run.sh", "sub"}) {
		t.Errorf("listing after re-ingest: %v", names)
	}

	// A removed file: its name is dropped from the kernel's cache.
	err = f.m.Update(func(w *manifest.Writer) error {
		_, err := w.DeleteUnseen("lib/sub", func(p []byte) bool { return string(p) != "lib/sub/b.txt" })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v.invalidate(f.root.EmbeddedInode())
	if entries, _ := f.notes.take(); !equalStrings(entries, []string{"b.txt"}) {
		t.Errorf("entries invalidated after removing sub/b.txt: %v", entries)
	}
	if out, _ := f.lookup(sub.NodeId, "b.txt"); out.NodeId != 0 {
		t.Error("sub/b.txt still found after it was removed")
	}
}

// TestViewWatchNotices: a live view's watcher sees the manifest change and
// invalidates without anyone asking.
func TestViewWatchNotices(t *testing.T) {
	f := newViewFixture(t)
	f.mustLookup(1, "a.txt")
	v0, err := f.m.Version()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.v.watch(ctx, f.root.EmbeddedInode(), 10*time.Millisecond, v0); close(done) }()
	time.Sleep(30 * time.Millisecond)
	if entries, inodes := f.notes.take(); len(entries)+len(inodes) != 0 {
		t.Errorf("watch invalidated %v %v with no change", entries, inodes)
	}
	put(t, f.m, map[string]manifest.Entry{"lib/a.txt": fileEntry(t, f.store, "changed\n", 0o644)})
	deadline := time.Now().Add(5 * time.Second)
	var entries []string
	for time.Now().Before(deadline) {
		e, _ := f.notes.take()
		entries = append(entries, e...)
		if len(entries) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !equalStrings(entries, []string{"a.txt"}) {
		t.Errorf("watch invalidated %v after a.txt changed, want [a.txt]", entries)
	}
}

// TestViewPrefetchesAnOpenedFilesDirectory: the first open of a file warms
// the blobs of its directory's small files (not larger ones, not empty
// ones, not those whose blob is missing), once per directory until a
// re-ingest, and without holding up the open.
func TestViewPrefetchesAnOpenedFilesDirectory(t *testing.T) {
	f := newViewFixture(t)
	gone := fileEntry(t, f.store, "its blob goes away\n", 0o644)
	if err := os.Remove(cas.BlobPath(f.store, gone.Key())); err != nil {
		t.Fatal(err)
	}
	put(t, f.m, map[string]manifest.Entry{
		"lib/big.bin":  fileEntry(t, f.store, strings.Repeat("b", prefetchMaxSize+1), 0o644),
		"lib/empty":    fileEntry(t, f.store, "", 0o644),
		"lib/gone.txt": gone,
	})
	stop := f.v.startPrefetch()
	defer stop()
	p := f.v.prefetch
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for p.warmed.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("warmed %d blobs, want %d", p.warmed.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // nothing more comes
		if got := p.warmed.Load(); got != n {
			t.Fatalf("warmed %d blobs, want %d", got, n)
		}
	}
	a := f.mustLookup(1, "a.txt")
	if got, _ := f.read(a.NodeId); got != "alpha\n" {
		t.Fatalf("read a.txt: %q", got)
	}
	waitFor(2) // a.txt and run.sh
	run := f.mustLookup(1, "run.sh")
	f.read(run.NodeId) // lib again: nothing
	sub := f.mustLookup(1, "sub")
	b := f.mustLookup(sub.NodeId, "b.txt")
	f.read(b.NodeId)
	waitFor(3)
	// A re-ingest may have given lib's files other blobs: warmed again.
	f.v.invalidate(f.root.EmbeddedInode())
	a = f.mustLookup(1, "a.txt")
	f.read(a.NodeId)
	waitFor(5)
}
