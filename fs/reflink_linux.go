package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// cloneAt creates name in dirfd (O_EXCL, never following a symlink) as a
// clone of src sharing its extents (FICLONE), and returns a descriptor of
// the new file for setting its mode and times. On failure the new file may
// be left behind, empty: the caller's temp handling removes it.
func cloneAt(src *os.File, dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, err
	}
	if err := unix.IoctlFileClone(fd, int(src.Fd())); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
