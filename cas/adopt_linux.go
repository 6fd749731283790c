package cas

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// linkFD gives the open file fd the new name: /proc/self/fd/N followed by
// linkat names the inode itself, which an unprivileged owner may link
// (linkat's AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
func linkFD(fd int, name string) error {
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
}
