//go:build !linux

package cas

import "io/fs"

// umaskStrips cannot read the umask without changing it here: chmod always.
func umaskStrips(fs.FileMode) bool { return true }
