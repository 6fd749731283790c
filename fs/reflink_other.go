//go:build !linux

package fs

import (
	"errors"
	"os"
)

// cloneFile is not implemented here yet (macOS has clonefile(2), by path).
func cloneFile(dst, src *os.File) error { return errors.ErrUnsupported }
