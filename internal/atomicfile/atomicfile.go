// Package atomicfile replaces small files so that a crash leaves the old
// version or the new one, never a torn one, and a replacement that returned
// stays replaced.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data: written and fsynced under a temporary name
// beside it, renamed over path, then the directory fsynced.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	// A fresh file, never whatever sits at the temp name: one left by a
	// crash goes first, and O_EXCL refuses a symlink planted there (root
	// may write in a directory another user can write).
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
