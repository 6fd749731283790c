package fs

import (
	"errors"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// FSType is the filesystem type vrift views show in mount tables.
const FSType = "fuse.vrift"

// Mount is one vrift view in the mount table.
type Mount struct {
	Mountpoint string `json:"mountpoint"`
	// Source is the view's manifest (and subtree), as given at mount time.
	Source string `json:"source"`
	// Stale is set when the serving process is gone: the kernel answers
	// ENOTCONN for the mountpoint.
	Stale bool `json:"stale"`
	// Reads says how file content is served: "passthrough" (the kernel
	// reads blobs directly) or "fuse" (through the server); empty when
	// the server left no note (another user's mount).
	Reads string `json:"reads,omitempty"`
}

// readsNote is where a server notes how its mount serves reads, for
// status: a small file per mountpoint in the user's temp directory.
func readsNote(mountpoint string) string {
	sum := fnv.New64a()
	sum.Write([]byte(mountpoint))
	return filepath.Join(os.TempDir(), "vrift-"+strconv.Itoa(os.Getuid()), "mounts", strconv.FormatUint(sum.Sum64(), 16))
}

func writeReadsNote(mountpoint, reads string) {
	p := readsNote(mountpoint)
	if os.MkdirAll(filepath.Dir(p), 0o700) == nil {
		os.WriteFile(p, []byte(reads), 0o600)
	}
}

// readReadsNote is the server's note on how mountpoint serves reads, or ""
// when it left none.
func readReadsNote(mountpoint string) string {
	b, err := os.ReadFile(readsNote(mountpoint))
	if err != nil {
		return ""
	}
	return string(b)
}

// IsStale reports whether path is a FUSE mount whose server is gone. It
// asks with statfs, which always reaches the server: a stat could be
// answered from the kernel's attribute cache.
func IsStale(path string) bool {
	var st syscall.Statfs_t
	return errors.Is(syscall.Statfs(path, &st), syscall.ENOTCONN)
}

// Unmount detaches a FUSE mount, also one whose server is gone: umount2 as
// root (lazily or forcibly if busy), the FUSE helper otherwise.
func Unmount(mp string) error {
	if os.Geteuid() == 0 {
		err := syscall.Unmount(mp, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = detach(mp)
		}
		if errors.Is(err, syscall.EINVAL) {
			return errors.New("not a mount point")
		}
		return err
	}
	return userUnmount(mp)
}
