package fs

import (
	"os/exec"
	"syscall"
)

// detach unmounts a busy mount lazily (MNT_DETACH): it leaves the namespace
// now and goes once its last user does.
func detach(mp string) error { return syscall.Unmount(mp, syscall.MNT_DETACH) }

// userUnmount unmounts a FUSE mount as its unprivileged owner, through the
// setuid fusermount3 (-z: lazily, so a stale mount goes too).
func userUnmount(mp string) error {
	out, err := exec.Command("fusermount3", "-u", "-z", mp).CombinedOutput()
	if err != nil {
		return helperError("fusermount3", out, err)
	}
	return nil
}
