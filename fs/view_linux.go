package fs

import (
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const passthroughSupported = true

// passthroughFile lets the kernel read the blob directly (FUSE
// passthrough) where the kernel and the server's privileges allow; go-fuse
// falls back to Read quietly where they do not.
type passthroughFile struct{ *blobFile }

func (p passthroughFile) PassthroughFd() (int, bool) { return int(p.f.Fd()), true }

func withPassthrough(b *blobFile) gofs.FileHandle { return passthroughFile{b} }

// noOpendir answers OPENDIR with ENOSYS where the kernel offers
// zero-message opendir (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1+): the kernel
// then never sends OPENDIR or RELEASEDIR again, and keeps every listing
// (it opens directories with FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR itself).
// With listings cached but directories opened, a warm find -ls of the npm
// fixture still cost one OPENDIR and one RELEASEDIR per directory (2,682
// each: all a warm walk sent; 886 ms against 289 ms without them, disk
// ~300 ms); with it a warm walk sends nothing. go-fuse's node
// layer needs a handle to list, so READDIR(PLUS) without one (fh 0) opens
// one for the request: the view's listing resumes at any offset
// (dirHandle.Seekdir).
type noOpendir struct {
	fuse.RawFileSystem
	server *fuse.Server
	// kernelFlags, when set, stands in for the server's negotiated
	// flags (tests, which have no kernel).
	kernelFlags uint64
}

func wrapRaw(raw fuse.RawFileSystem) fuse.RawFileSystem { return &noOpendir{RawFileSystem: raw} }

func (r *noOpendir) Init(s *fuse.Server) {
	r.server = s
	r.RawFileSystem.Init(s)
}

func (r *noOpendir) offered() bool {
	flags := r.kernelFlags
	if r.server != nil {
		flags = r.server.KernelSettings().Flags64()
	}
	return flags&fuse.CAP_NO_OPENDIR_SUPPORT != 0
}

func (r *noOpendir) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if r.offered() {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.OpenDir(cancel, in, out)
}

func (r *noOpendir) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readdir(cancel, in, out, r.RawFileSystem.ReadDir)
}

func (r *noOpendir) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readdir(cancel, in, out, r.RawFileSystem.ReadDirPlus)
}

func (r *noOpendir) readdir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(cancel, in, out)
	}
	var oo fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo); !st.Ok() {
		return st
	}
	defer r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	opened := *in
	opened.Fh = oo.Fh
	return read(cancel, &opened, out)
}

// readAhead asks the kernel to start reading the first size bytes of fd
// into the page cache, without waiting for them.
func readAhead(fd int, size int64) { unix.Fadvise(fd, 0, size, unix.FADV_WILLNEED) }
