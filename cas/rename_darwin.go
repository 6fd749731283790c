package cas

import (
	"errors"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames oldpath to newpath atomically, failing with EEXIST
// instead of replacing an existing newpath: renamex_np(RENAME_EXCL), macOS's
// RENAME_NOREPLACE (APFS and HFS+ have it since 10.12).
func renameNoReplace(oldpath, newpath string) error {
	err := unix.RenamexNp(oldpath, newpath, unix.RENAME_EXCL)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EINVAL) {
		// Filesystems without it (SMB, FAT): link(2) never replaces either.
		return linkThenRemove(oldpath, newpath)
	}
	return err
}
