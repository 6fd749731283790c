//go:build !linux

package tree

import (
	"strings"

	"golang.org/x/sys/unix"
)

// openBeneath resolves rel below dirfd one component at a time, each opened
// with O_NOFOLLOW relative to the last: the portable equivalent of
// openat2's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS (clean has already refused
// "..").
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	parts := strings.Split(rel, "/")
	cur := dirfd
	for i, p := range parts {
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags | unix.O_NOFOLLOW
		}
		fd, err := unix.Openat(cur, p, f, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// utimeOmit is macOS's UTIME_OMIT (sys/stat.h), which x/sys does not name.
const utimeOmit = -2

// futimens sets fd's own times. x/sys offers futimes only on macOS:
// microseconds, where Linux keeps nanoseconds.
func futimens(fd int, ts *[2]unix.Timespec) error {
	return unix.Futimes(fd, []unix.Timeval{unix.NsecToTimeval(unix.TimespecToNsec(ts[0])), unix.NsecToTimeval(unix.TimespecToNsec(ts[1]))})
}
