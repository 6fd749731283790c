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

// mountTable is the machine's mount table, from getfsstat(2).
func mountTable() ([]tableEntry, error) {
	n, err := unix.Getfsstat(nil, unix.MNT_NOWAIT)
	if err != nil {
		return nil, err
	}
	buf := make([]unix.Statfs_t, n+8) // room for mounts made meanwhile
	if n, err = unix.Getfsstat(buf, unix.MNT_NOWAIT); err != nil {
		return nil, err
	}
	out := make([]tableEntry, 0, n)
	for i := range buf[:n] {
		out = append(out, tableEntry{
			Mountpoint: unix.ByteSliceToString(buf[i].Mntonname[:]),
			FSType:     unix.ByteSliceToString(buf[i].Fstypename[:]),
			Source:     unix.ByteSliceToString(buf[i].Mntfromname[:]),
			Owner:      int(buf[i].Owner),
		})
	}
	return out, nil
}

// viewSource is a view's manifest as mounted, if e is a vrift view: a
// macFUSE (or older osxfuse) mount whose source carries the prefix.
func viewSource(e tableEntry) (string, bool) {
	if (e.FSType != "macfuse" && e.FSType != "osxfuse") || !strings.HasPrefix(e.Source, darwinSourcePrefix) {
		return "", false
	}
	return strings.TrimPrefix(e.Source, darwinSourcePrefix), true
}
