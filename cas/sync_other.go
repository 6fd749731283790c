//go:build !linux

package cas

import (
	"syscall"
)

// Sync makes every blob renamed into the store so far durable. Without
// syncfs(2), sync(2) is the portable way to flush directory entries in bulk.
func (s *Store) Sync() error {
	syscall.Sync()
	return nil
}
