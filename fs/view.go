package fs

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// View serves a manifest's tree (or one subtree) read-only through FUSE:
// attributes and names come from the manifest, looked up in LMDB as the
// kernel asks (nothing is loaded wholesale), and file content from the
// blobs. Content never changes under a name, so the kernel is told to cache
// entries, attributes and pages for a long time.
type View struct {
	m         *manifest.Manifest
	storeRoot string
	subtree   string
	uid, gid  uint32
	// passthrough is set when the kernel offers FUSE passthrough and the
	// server may use it.
	passthrough   bool
	noPassthrough bool

	listings listings
	// prefetch is nil until Serve starts it (prefetch.go).
	prefetch *prefetcher
}

// ViewOptions configure a view.
type ViewOptions struct {
	StoreRoot string
	Subtree   string
	// NoPassthrough serves every read through this process even where
	// FUSE passthrough is possible (for measurements and debugging).
	NoPassthrough bool
}

// NewView prepares a view of m. The caller keeps m open while it serves.
func NewView(m *manifest.Manifest, opts ViewOptions) (*View, error) {
	sub := opts.Subtree
	if sub == "" {
		sub = manifest.RootPath
	}
	if err := manifest.CheckPath(sub); err != nil {
		return nil, err
	}
	return &View{m: m, storeRoot: opts.StoreRoot, subtree: sub, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		noPassthrough: opts.NoPassthrough}, nil
}

// cacheFor is how long the kernel may trust what the view told it: a
// mounted manifest is read as it is, and when a re-ingest changes it while
// mounted, watch tells the kernel which of its cached names, attributes,
// listings and pages to drop (see invalidate); a re-mount is a new
// connection with empty caches. So the timeout only bounds how long an
// entry the kernel no longer uses stays cached; after it, one LOOKUP.
const cacheFor = time.Hour

// watchEvery is how often a mounted view checks whether its manifest was
// re-ingested: one mdb_env_info, no transaction, no I/O.
const watchEvery = time.Second

// Root returns the node for the view's top directory.
func (v *View) Root() gofs.InodeEmbedder {
	n := &node{v: v, key: v.subtree}
	if e, errno := v.lookup(v.subtree); errno == 0 {
		n.e.Store(&e)
	}
	return n
}

// Options returns the mount options for serving the view. What each bought
// on the npm fixture (28,780 entries, 2,636 directories), counted in
// requests the server saw (go-fuse's Debug log) and timed by
// scripts/bench-fuse.sh (view/disk, medians of per-round ratios, caches
// dropped before cold runs; this shared 2-core VM ran at load 8-16, so
// the times spread widely; the request counts do not):
//   - EntryTimeout, AttrTimeout, NegativeTimeout an hour (as before): a
//     second require() of 15 packages by Node sends no LOOKUP at all
//     (the first sent 1,333), and a warm find -ls sends no LOOKUP or
//     GETATTR.
//   - READDIRPLUS (go-fuse asks for it unless DisableReadDirPlus): a cold
//     find -ls is 5,304 READDIRPLUS (two per directory, the second finds
//     the end) and 39 READLINK, no LOOKUP or GETATTR; the view answers
//     each entry from the listing it just read (dirHandle.Lookup), with
//     no LMDB get per entry.
//   - FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE for directories, plus zero-message
//     opendir (noOpendir, view_linux.go): a warm find -ls sends nothing
//     (before: a READDIRPLUS of every directory, then still an OPENDIR
//     and a RELEASEDIR each); warm find -ls went from 4.04x disk (rounds
//     3.84-5.37) to 1.09x (0.66-1.69).
//   - the listings kept between requests (listings) and parked LMDB read
//     transactions (manifest.Lookup, Children): the server's CPU for a
//     cold walk fell from 0.74 s to 0.55 s.
//   - EnableSymlinkCaching: a READLINK is answered once per symlink.
//   - passthrough on files (Open): reads never reach this process (go-fuse
//     then drops FOPEN_KEEP_CACHE, which only the non-passthrough path
//     needs: the blob's own page cache survives reopening). Each open
//     still costs an OPEN and a RELEASE (1,132 each per Node run, warm or
//     cold).
func (v *View) Options(name string) *gofs.Options {
	d := cacheFor
	return &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName: fsName(name),
			Name:   fuseSubtype,
			// nosuid, nodev: a manifest is data its author chose; a view
			// mounted by root must not serve a setuid-root binary or a
			// device (the attributes mask the bits too).
			Options:              []string{"ro", "nosuid", "nodev", "default_permissions"},
			MaxReadAhead:         1 << 20,
			EnableSymlinkCaching: true,
		},
		EntryTimeout:    &d,
		AttrTimeout:     &d,
		NegativeTimeout: &d,
		UID:             v.uid,
		GID:             v.gid,
	}
}

// lookup reads key's entry; the view's own root may be absent from the
// manifest (a whole-project view), and is then an empty-mode directory.
func (v *View) lookup(key string) (manifest.Entry, syscall.Errno) {
	e, ok, err := v.m.Lookup(key)
	if err != nil {
		return e, syscall.EIO
	}
	if !ok {
		if key == v.subtree && key == manifest.RootPath {
			return manifest.Entry{Kind: manifest.Dir, Mode: 0o755}, 0
		}
		return e, syscall.ENOENT
	}
	return e, 0
}

// node is one path of the view. It keeps the manifest entry it was looked
// up with, so Getattr, Open and Readlink need no LMDB read; invalidate
// replaces it when a re-ingest changes the manifest.
type node struct {
	gofs.Inode
	v   *View
	key string
	e   atomic.Pointer[manifest.Entry]

	// missing are the names Lookup answered ENOENT for: the kernel caches
	// those negative entries, and only a notification for each name can
	// drop them if a re-ingest adds it.
	mu      sync.Mutex
	missing map[string]struct{}
}

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
)

func (n *node) entry() (manifest.Entry, syscall.Errno) {
	if e := n.e.Load(); e != nil {
		return *e, 0
	}
	e, errno := n.v.lookup(n.key)
	if errno == 0 {
		n.e.Store(&e)
	}
	return e, errno
}

func inoOf(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64() | 1 // never 0, which FUSE reserves
}

func typeBits(k manifest.Kind) uint32 {
	switch k {
	case manifest.Dir:
		return syscall.S_IFDIR
	case manifest.Symlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

func (v *View) fill(e *manifest.Entry, key string, a *fuse.Attr) {
	a.Ino = inoOf(key)
	a.Mode = typeBits(e.Kind) | (e.Mode & 0o1777)
	a.Owner = fuse.Owner{Uid: v.uid, Gid: v.gid}
	sec, nsec := uint64(e.MTime/1e9), uint32(e.MTime%1e9)
	a.Mtime, a.Mtimensec = sec, nsec
	a.Ctime, a.Ctimensec = sec, nsec
	a.Atime, a.Atimensec = sec, nsec
	a.Nlink = 1
	switch e.Kind {
	case manifest.File:
		a.Size = uint64(e.Size)
	case manifest.Symlink:
		a.Size = uint64(len(e.Target))
	case manifest.Dir:
		a.Nlink = 2
		a.Size = 4096
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, errno := n.entry()
	if errno != 0 {
		return errno
	}
	n.v.fill(&e, n.key, &out.Attr)
	out.SetTimeout(cacheFor)
	return 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	key := manifest.Join(n.key, name)
	e, errno := n.v.lookup(key)
	if errno == syscall.ENOENT {
		n.mu.Lock()
		if n.missing == nil {
			n.missing = make(map[string]struct{})
		}
		n.missing[name] = struct{}{}
		n.mu.Unlock()
	}
	if errno != 0 {
		return nil, errno
	}
	return n.child(ctx, name, key, &e, out), 0
}

// child makes the node for key (entry e) and fills out for the kernel.
func (n *node) child(ctx context.Context, name, key string, e *manifest.Entry, out *fuse.EntryOut) *gofs.Inode {
	n.v.fill(e, key, &out.Attr)
	out.SetEntryTimeout(cacheFor)
	out.SetAttrTimeout(cacheFor)
	id := stableAttr(key, e)
	// go-fuse keeps the node it already has for this identity (and drops
	// the new one): give that one the entry just read.
	if old := n.GetChild(name); old != nil && old.StableAttr() == id {
		if on, ok := old.Operations().(*node); ok {
			on.e.Store(e)
		}
	}
	c := &node{v: n.v, key: key}
	c.e.Store(e)
	return n.NewInode(ctx, c, id)
}

// stableAttr is a path's identity for go-fuse and the kernel. A file's
// includes its content (Gen from the blob key): a re-ingest that changes
// it makes a new node, so a new kernel inode. The kernel's passthrough
// binds one backing file to an inode while any open of it lasts (go-fuse
// reuses the first backing id), so with one inode per path a file opened
// before a re-ingest kept serving the old blob to every later open.
func stableAttr(key string, e *manifest.Entry) gofs.StableAttr {
	id := gofs.StableAttr{Mode: typeBits(e.Kind), Ino: inoOf(key)}
	if e.Kind == manifest.File {
		h := fnv.New64a()
		h.Write(e.Sum[:])
		if e.Mode&0o111 != 0 {
			h.Write([]byte{1})
		}
		id.Gen = h.Sum64()
	}
	return id
}

// OpendirHandle lists the directory once per open and tells the kernel to
// keep the listing (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE): with the hour-long
// attribute timeout it serves every later readdir itself until invalidate
// drops it.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// listing is a directory's children as one LMDB cursor walk read them.
type listing []listed

type listed struct {
	name string
	e    manifest.Entry
}

// listings keeps the last few directories listed. The kernel reads a
// directory in requests of up to 32 KiB and then once more at the end to
// see it is done, and without an OPENDIR (noOpendir) each request comes
// on a new handle: reading the children again for each was a third of the
// server's CPU in a cold walk of the npm fixture. A walk lists one
// directory at a time, so a few suffice; memory stays bounded (a listing
// is dropped after listingsKept others).
type listings struct {
	mu    sync.Mutex
	m     map[*node]listing
	order []*node
	next  int
	// gen counts clears: a listing read before one is not kept after it.
	gen uint64
}

const listingsKept = 64

func (c *listings) get(n *node) (l listing, ok bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok = c.m[n]
	return l, ok, c.gen
}

func (c *listings) put(n *node, l listing, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil {
		c.m = make(map[*node]listing, listingsKept)
		c.order = make([]*node, listingsKept)
	}
	if _, ok := c.m[n]; ok {
		c.m[n] = l
		return
	}
	if old := c.order[c.next]; old != nil {
		delete(c.m, old)
	}
	c.order[c.next] = n
	c.next = (c.next + 1) % listingsKept
	c.m[n] = l
}

func (c *listings) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
	c.order = nil
	c.next = 0
	c.gen++
}

// dirHandle is one open directory: its children handed out by Readdirent
// and, for READDIRPLUS, by Lookup without reading the manifest again.
type dirHandle struct {
	n      *node
	l      listing
	loaded bool
	next   int
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (d *dirHandle) load() syscall.Errno {
	if d.loaded {
		return 0
	}
	l, ok, gen := d.n.v.listings.get(d.n)
	if ok {
		d.l, d.loaded = l, true
		return 0
	}
	l = make(listing, 0, 16)
	err := d.n.v.m.Children(d.n.key, func(name string, e manifest.Entry) error {
		l = append(l, listed{name, e})
		return nil
	})
	if err != nil {
		return syscall.EIO
	}
	d.l, d.loaded = l, true
	d.n.v.listings.put(d.n, l, gen)
	return 0
}

// Readdirent is called under go-fuse's per-handle lock, as are Lookup and
// Seekdir.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.load(); errno != 0 {
		return nil, errno
	}
	if d.next >= len(d.l) {
		return nil, 0
	}
	c := &d.l[d.next]
	d.next++
	return &fuse.DirEntry{
		Name: c.name,
		Mode: typeBits(c.e.Kind),
		Ino:  inoOf(manifest.Join(d.n.key, c.name)),
		Off:  uint64(d.next),
	}, 0
}

// Lookup answers READDIRPLUS for the name Readdirent just produced.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	i := d.next - 1
	if i < 0 || i >= len(d.l) || d.l[i].name != name {
		return d.n.Lookup(ctx, name, out)
	}
	e := d.l[i].e
	return d.n.child(ctx, name, manifest.Join(d.n.key, name), &e, out), 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.load(); errno != 0 {
		return errno
	}
	if off > uint64(len(d.l)) {
		return syscall.EINVAL
	}
	d.next = int(off)
	return 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	e, errno := n.entry()
	if errno != 0 {
		return nil, errno
	}
	if e.Kind != manifest.Symlink {
		return nil, syscall.EINVAL
	}
	return e.Target, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	e, errno := n.entry()
	if errno != 0 {
		return nil, 0, errno
	}
	if e.Kind != manifest.File {
		return nil, 0, syscall.EISDIR
	}
	f, err := os.Open(cas.BlobPath(n.v.storeRoot, e.Key()))
	if err != nil {
		return nil, 0, syscall.EIO // the blob is missing: vrift verify names it
	}
	if _, parent := n.Parent(); parent != nil {
		if pn, ok := parent.Operations().(*node); ok {
			n.v.prefetch.opened(pn.key)
		}
	}
	// Content under a name never changes while the manifest does not
	// (invalidate drops the pages when it does): keep the page cache
	// across opens.
	bf := &blobFile{f: f}
	if n.v.noPassthrough {
		return bf, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	return withPassthrough(bf), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// sameContent says whether a and b look the same through the view: same
// kind, attributes and content.
func sameContent(a, b *manifest.Entry) bool {
	return a.Kind == b.Kind && a.Mode == b.Mode && a.MTime == b.MTime && a.Size == b.Size &&
		a.Sum == b.Sum && string(a.Target) == string(b.Target)
}

// invalidate brings the kernel's caches in line with the manifest as it is
// now, after a re-ingest changed it under a live mount. The kernel caches
// only what the view told it, and go-fuse's tree holds exactly the nodes
// the kernel still knows, so walking that tree finds every cached name:
// a node whose entry changed or went away is dropped from its parent
// (NotifyEntry: the next access looks it up again) and loses its
// attributes and pages (NotifyContent); every directory loses its cached
// listing (names may have come or gone); a name once answered ENOENT that
// now exists has its negative entry dropped. It returns how many
// notifications it sent.
func (v *View) invalidate(root *gofs.Inode) int {
	sent := 0
	var walk func(in *gofs.Inode)
	walk = func(in *gofs.Inode) {
		n, ok := in.Operations().(*node)
		if !ok {
			return
		}
		if in.IsDir() {
			in.NotifyContent(0, 0)
			sent++
			n.mu.Lock()
			var added []string
			for name := range n.missing {
				if _, errno := v.lookup(manifest.Join(n.key, name)); errno != syscall.ENOENT {
					added = append(added, name)
					delete(n.missing, name)
				}
			}
			n.mu.Unlock()
			for _, name := range added {
				in.NotifyEntry(name)
				sent++
			}
		}
		for name, c := range in.Children() {
			cn, ok := c.Operations().(*node)
			if !ok {
				continue
			}
			old := cn.e.Load()
			e, errno := v.lookup(cn.key)
			switch {
			case errno != 0 || old == nil || stableAttr(cn.key, &e) != c.StableAttr():
				// Gone, unreadable, or another identity (kind or
				// content): the kernel must look the name up again and
				// get a new node; the old one stays as it was for the
				// opens that still hold it.
				in.NotifyEntry(name)
				c.NotifyContent(0, 0)
				sent += 2
				continue
			case !sameContent(old, &e):
				cn.e.Store(&e)
				in.NotifyEntry(name)
				c.NotifyContent(0, 0)
				sent += 2
			}
			walk(c)
		}
	}
	if e, errno := v.lookup(v.subtree); errno == 0 {
		if rn, ok := root.Operations().(*node); ok {
			rn.e.Store(&e)
		}
	}
	v.listings.clear()
	v.prefetch.reset()
	walk(root)
	return sent
}

// watch calls invalidate whenever the manifest's version moves on from
// last (read before the view began serving, so no change is missed), until
// ctx ends.
func (v *View) watch(ctx context.Context, root *gofs.Inode, every time.Duration, last int64) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := v.m.Version()
		if err != nil || cur == last {
			continue
		}
		last = cur
		v.invalidate(root)
	}
}

// blobFile is an open blob.
type blobFile struct {
	f *os.File
}

var (
	_ gofs.FileReader   = (*blobFile)(nil)
	_ gofs.FileReleaser = (*blobFile)(nil)
)

func (b *blobFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// Spliced from the blob's descriptor where the kernel can.
	return fuse.ReadResultFd(b.f.Fd(), off, len(dest)), 0
}

func (b *blobFile) Release(ctx context.Context) syscall.Errno {
	b.f.Close()
	return 0
}

// PassthroughSupport says, for status, whether views on this platform can
// let the kernel read blobs directly (FUSE passthrough): only Linux has it;
// elsewhere (macFUSE) every read goes through the view's server.
func PassthroughSupport() (supported bool, note string) {
	if passthroughSupported {
		return true, "supported (used when the kernel offers it and the view's server runs as root)"
	}
	return false, "not supported on " + runtime.GOOS + " (FUSE passthrough is Linux-only): reads go through the view's server"
}

// Serve mounts the view at mountpoint (named source in the mount table) and
// serves it until ctx ends or it is unmounted. ready is called once the
// mount is live, with whether FUSE passthrough is in use: the kernel then
// reads blobs directly, which needs the kernel's support and CAP_SYS_ADMIN
// (root) in the server; otherwise reads go through this process.
func (v *View) Serve(ctx context.Context, mountpoint, source string, ready func(passthrough bool)) error {
	opts := v.Options(source)
	// root mounts with mount(2) itself; everyone else through fusermount3.
	opts.DirectMount = os.Geteuid() == 0
	version, err := v.m.Version()
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	root := v.Root()
	// gofs.Mount, with the view's raw layer in between (noOpendir).
	server, err := fuse.NewServer(wrapRaw(gofs.NewNodeFS(root, opts)), mountpoint, &opts.MountOptions)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	// Before the first request; stopped (deferred) before the caller
	// closes the manifest.
	defer v.startPrefetch()()
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	v.passthrough = !v.noPassthrough && passthroughSupported &&
		os.Geteuid() == 0 && server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	reads := "fuse"
	if v.passthrough {
		reads = "passthrough"
	}
	writeReadsNote(mountpoint, reads)
	defer os.Remove(readsNote(mountpoint))
	if ready != nil {
		ready(v.passthrough)
	}
	stop := context.AfterFunc(ctx, func() { server.Unmount() })
	defer stop()
	wctx, endWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { v.watch(wctx, root.EmbeddedInode(), watchEvery, version); close(watched) }()
	server.Wait()
	// The manifest stays open until Serve returns: stop reading it first.
	endWatch()
	<-watched
	return nil
}
