package cas

import (
	"fmt"
	"os"
)

// Sync makes every blob renamed into the store so far durable, directory
// entries included. macOS has no syncfs(2), and its sync(2) only starts the
// writes. Each blob's data was already synced by its put; syncing the store's
// root directory commits the filesystem's pending metadata (on APFS an
// fsync commits the volume's whole transaction, renames included). Go's
// File.Sync is F_FULLFSYNC on macOS (plain fsync where the filesystem lacks
// it), so the drive's write cache is flushed too, which fsync alone does
// not do there.
func (s *Store) Sync() error {
	f, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	return nil
}
