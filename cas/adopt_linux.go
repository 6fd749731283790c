package cas

import (
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// linkFD gives the open file fd the new name. linkat's AT_EMPTY_PATH names
// the descriptor's inode directly; before Linux 6.10 it needs
// CAP_DAC_READ_SEARCH, since then only that this process opened the file.
// Where it is refused, /proc/self/fd/N followed by linkat names the inode
// too, at the cost of resolving a path through /proc (the most of linkFD's
// 13% of an adopting ingest's CPU time).
func linkFD(fd int, name string) error {
	err := unix.Linkat(fd, "", unix.AT_FDCWD, name, unix.AT_EMPTY_PATH)
	if err == nil || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return err
	}
	return unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
}

// modeAttr keeps an adopted file's own mode on its inode, for the one case
// where nothing else does: a writer killed after its batch published the
// blob (the user's path and the blob are one inode, read-only now) but
// before the manifest recorded the mode. The next ingest finds the file
// as a read-only stranger linked from the store and takes its mode from
// here (AdoptedMode). Set only when the chmod changes the mode.
const modeAttr = "user.vrift.mode"

func setAdoptedMode(fd int, mode uint32) {
	unix.Fsetxattr(fd, modeAttr, []byte(strconv.FormatUint(uint64(mode), 8)), 0) // best effort: no xattrs, no recovery
}

// AdoptedMode returns the mode an adoption recorded on the open file fd,
// if any (see modeAttr).
func AdoptedMode(fd int) (uint32, bool) {
	var buf [8]byte
	n, err := unix.Fgetxattr(fd, modeAttr, buf[:])
	if err != nil || n <= 0 {
		return 0, false
	}
	m, err := strconv.ParseUint(string(buf[:n]), 8, 32)
	if err != nil || m > 0o7777 {
		return 0, false
	}
	return uint32(m), true
}
