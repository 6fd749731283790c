package fs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// darwinSourcePrefix marks vrift's views in macOS's mount table, where
// every macFUSE mount has the fstype "macfuse" (the FUSE subtype is not
// shown): a view's source is "vrift:" + the manifest.
const darwinSourcePrefix = "vrift:"

// fuseSubtype is empty: macFUSE's mount helper rejects Linux's subtype=
// option (its fssubtype is a number from its own table), so views are told
// apart by their source instead.
const fuseSubtype = ""

// fsName is the source a view shows in the mount table (f_mntfromname).
func fsName(source string) string { return darwinSourcePrefix + source }

// Mounts lists the vrift views mounted on this machine, from getfsstat(2):
// macFUSE (or the older osxfuse) mounts whose source carries the prefix.
func Mounts() ([]Mount, error) {
	n, err := unix.Getfsstat(nil, unix.MNT_NOWAIT)
	if err != nil {
		return nil, err
	}
	buf := make([]unix.Statfs_t, n+8) // room for mounts made meanwhile
	if n, err = unix.Getfsstat(buf, unix.MNT_NOWAIT); err != nil {
		return nil, err
	}
	var out []Mount
	for i := range buf[:n] {
		typ, from := unix.ByteSliceToString(buf[i].Fstypename[:]), unix.ByteSliceToString(buf[i].Mntfromname[:])
		if (typ != "macfuse" && typ != "osxfuse") || !strings.HasPrefix(from, darwinSourcePrefix) {
			continue
		}
		m := Mount{Mountpoint: unix.ByteSliceToString(buf[i].Mntonname[:]), Source: strings.TrimPrefix(from, darwinSourcePrefix)}
		m.Stale = IsStale(m.Mountpoint)
		m.Reads = readReadsNote(m.Mountpoint)
		out = append(out, m)
	}
	return out, nil
}
