package fs

import gofs "github.com/hanwen/go-fuse/v2/fs"

const passthroughSupported = true

// passthroughFile lets the kernel read the blob directly (FUSE
// passthrough) where the kernel and the server's privileges allow; go-fuse
// falls back to Read quietly where they do not.
type passthroughFile struct{ *blobFile }

func (p passthroughFile) PassthroughFd() (int, bool) { return int(p.f.Fd()), true }

func withPassthrough(b *blobFile) gofs.FileHandle { return passthroughFile{b} }
