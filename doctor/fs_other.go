//go:build !linux

package doctor

import "golang.org/x/sys/unix"

func fsName(s *unix.Statfs_t) string {
	return unix.ByteSliceToString(s.Fstypename[:])
}

// reflinkFS: APFS clones files (clonefile(2)).
func reflinkFS(s *unix.Statfs_t) bool {
	return fsName(s) == "apfs"
}
