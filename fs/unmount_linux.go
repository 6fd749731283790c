package fs

import (
	"fmt"
	"os/exec"
	"strings"
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
		return fmt.Errorf("fusermount3: %s", strings.TrimSpace(string(out)))
	}
	return nil
}
