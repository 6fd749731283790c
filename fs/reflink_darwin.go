package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// cloneAt creates name in dirfd as a clone of src (fclonefileat(2), APFS):
// the new file shares src's blocks until either is written, and gets its
// own copy of src's attributes (mode 0444 or 0555). CLONE_NOOWNERCOPY makes
// it the caller's, as a copy would be, also when root clones a blob owned by
// _vrift. clonefile never replaces: an existing name fails with EEXIST, and
// CLONE_NOFOLLOW keeps a symlink from being followed. The returned
// descriptor is read-only (the clone starts read-only like its blob), which
// is enough for its owner to fchmod it and set its times.
func cloneAt(src *os.File, dirfd int, name string) (int, error) {
	if err := unix.Fclonefileat(int(src.Fd()), dirfd, name, unix.CLONE_NOFOLLOW|unix.CLONE_NOOWNERCOPY); err != nil {
		return -1, err
	}
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}
