package tree

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const utimeOmit = unix.UTIME_OMIT

// openBeneath resolves rel below dirfd in one openat2 call: RESOLVE_BENEATH
// refuses ".." and absolute paths out of dirfd, RESOLVE_NO_SYMLINKS fails
// with ELOOP on a symlink in any component, the last included.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if err != unix.EAGAIN && err != unix.EINTR {
			return fd, err
		}
	}
}

// futimens is utimensat(fd, NULL, ts, 0), which sets fd's own times.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
