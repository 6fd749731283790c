//go:build !linux

package cas

import "errors"

// linkFD is not available: macOS has no way to link an open file's inode
// by descriptor (no /proc, no AT_EMPTY_PATH), so nothing is adopted there.
func linkFD(fd int, name string) error { return errors.ErrUnsupported }

func setAdoptedMode(fd int, mode uint32) {}

// AdoptedMode: nothing is adopted here.
func AdoptedMode(fd int) (uint32, bool) { return 0, false }
