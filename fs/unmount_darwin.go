package fs

import (
	"os/exec"

	"golang.org/x/sys/unix"
)

// detach unmounts a busy mount forcibly (MNT_FORCE): macOS has no lazy
// unmount; open files on the view fail with ENXIO afterwards.
func detach(mp string) error { return unix.Unmount(mp, unix.MNT_FORCE) }

// userUnmount unmounts a macFUSE mount as the user who mounted it: macOS
// lets the owner of a user mount unmount it with umount(8), no setuid
// helper needed.
func userUnmount(mp string) error {
	out, err := exec.Command("/sbin/umount", "-f", mp).CombinedOutput()
	if err != nil {
		return helperError("umount", out, err)
	}
	return nil
}
