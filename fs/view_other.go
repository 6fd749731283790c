//go:build !linux

package fs

import (
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const passthroughSupported = false

func withPassthrough(b *blobFile) gofs.FileHandle { return b }

// wrapRaw: zero-message opendir is Linux's (see view_linux.go).
func wrapRaw(raw fuse.RawFileSystem) fuse.RawFileSystem { return raw }

// readAhead: the open alone warms the blob's inode here.
func readAhead(fd int, size int64) {}
