package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes dst share src's extents (FICLONE).
func cloneFile(dst, src *os.File) error { return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) }
