package doctor

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// Filesystem magic numbers (statfs(2)) of the filesystems worth naming.
var fsNames = map[int64]string{
	0xef53:     "ext4",
	0x9123683e: "btrfs",
	0x58465342: "xfs",
	0xca451a4e: "bcachefs",
	0x2fc12fc1: "zfs",
	0x01021994: "tmpfs",
	0x794c7630: "overlayfs",
	0x6969:     "nfs",
	0x65735546: "fuse",
	0x4d44:     "vfat",
}

func fsName(s *unix.Statfs_t) string {
	if n, ok := fsNames[int64(s.Type)]; ok {
		return n
	}
	return "a filesystem of type 0x" + strconv.FormatInt(int64(s.Type), 16)
}

// reflinkFS: FICLONE works on btrfs, bcachefs and XFS made with reflink=1
// (mkfs.xfs's default since xfsprogs 5.1), and on ZFS 2.2 with block
// cloning; not on ext4 or tmpfs.
func reflinkFS(s *unix.Statfs_t) bool {
	switch fsNames[int64(s.Type)] {
	case "btrfs", "xfs", "bcachefs", "zfs":
		return true
	}
	return false
}
