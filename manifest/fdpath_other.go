//go:build !linux

package manifest

import (
	"os"
	"path/filepath"
	"strconv"
)

// fdPath names the file open as fd (macOS's fdesc: /dev/fd/N reopens it).
func fdPath(fd int) string { return "/dev/fd/" + strconv.Itoa(fd) }

// dirPath names name inside d. /dev/fd/N cannot be traversed on macOS, so
// this is d's own path: the directory was checked through d, and only a
// rename of a directory above it in the window before LMDB opens it could
// redirect the open.
func dirPath(d *os.File, name string) string { return filepath.Join(d.Name(), name) }
