package fs

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"runtime"
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

// cacheFor is how long the kernel may trust what the view told it: names
// and attributes only change when the manifest is re-ingested, and then
// the view is remounted.
const cacheFor = time.Hour

// Root returns the node for the view's top directory.
func (v *View) Root() gofs.InodeEmbedder { return &node{v: v, key: v.subtree} }

// Options returns the mount options for serving the view.
func (v *View) Options(name string) *gofs.Options {
	d := cacheFor
	return &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName: fsName(name),
			Name:   fuseSubtype,
			// nosuid, nodev: a manifest is data its author chose; a view
			// mounted by root must not serve a setuid-root binary or a
			// device (the attributes mask the bits too).
			Options:      []string{"ro", "nosuid", "nodev", "default_permissions"},
			MaxReadAhead: 1 << 20,
		},
		EntryTimeout:    &d,
		AttrTimeout:     &d,
		NegativeTimeout: &d,
		UID:             v.uid,
		GID:             v.gid,
	}
}

// node is one path of the view.
type node struct {
	gofs.Inode
	v   *View
	key string
}

var (
	_ gofs.NodeLookuper   = (*node)(nil)
	_ gofs.NodeReaddirer  = (*node)(nil)
	_ gofs.NodeGetattrer  = (*node)(nil)
	_ gofs.NodeReadlinker = (*node)(nil)
	_ gofs.NodeOpener     = (*node)(nil)
)

func (n *node) entry() (manifest.Entry, syscall.Errno) {
	var e manifest.Entry
	var ok bool
	err := n.v.m.View(func(r *manifest.Reader) (err error) {
		e, ok, err = r.Get(n.key)
		return err
	})
	if err != nil {
		return e, syscall.EIO
	}
	if !ok {
		if n.key == n.v.subtree && n.key == manifest.RootPath {
			return manifest.Entry{Kind: manifest.Dir, Mode: 0o755}, 0
		}
		return e, syscall.ENOENT
	}
	return e, 0
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

func (n *node) fill(e manifest.Entry, key string, a *fuse.Attr) {
	a.Ino = inoOf(key)
	a.Mode = typeBits(e.Kind) | (e.Mode & 0o1777)
	a.Owner = fuse.Owner{Uid: n.v.uid, Gid: n.v.gid}
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
	n.fill(e, n.key, &out.Attr)
	out.SetTimeout(cacheFor)
	return 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	key := manifest.Join(n.key, name)
	var e manifest.Entry
	var ok bool
	err := n.v.m.View(func(r *manifest.Reader) (err error) {
		e, ok, err = r.Get(key)
		return err
	})
	if err != nil {
		return nil, syscall.EIO
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	n.fill(e, key, &out.Attr)
	out.SetEntryTimeout(cacheFor)
	out.SetAttrTimeout(cacheFor)
	child := &node{v: n.v, key: key}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: typeBits(e.Kind), Ino: inoOf(key)}), 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var list []fuse.DirEntry
	err := n.v.m.View(func(r *manifest.Reader) error {
		return r.Children(n.key, func(name string, e manifest.Entry) error {
			key := manifest.Join(n.key, name)
			list = append(list, fuse.DirEntry{Name: name, Mode: typeBits(e.Kind), Ino: inoOf(key)})
			return nil
		})
	})
	if err != nil {
		return nil, syscall.EIO
	}
	return gofs.NewListDirStream(list), 0
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
	// Content under a name never changes: keep the page cache across opens.
	bf := &blobFile{f: f}
	if n.v.noPassthrough {
		return bf, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
	}
	return withPassthrough(bf), fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
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
	server, err := gofs.Mount(mountpoint, v.Root(), opts)
	if err != nil {
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
	server.Wait()
	return nil
}
