package cas

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Sync makes every blob renamed into the store so far durable, directory
// entries included, with one syncfs(2) instead of an fsync per directory.
func (s *Store) Sync() error {
	f, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	return nil
}
