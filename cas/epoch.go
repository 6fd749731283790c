package cas

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vrift/vrift/internal/atomicfile"
)

// epochFile holds the store's removal epoch: a random token replaced
// before any blob can be removed or moved aside, so that while it is
// unchanged the store has only gained blobs. A manifest records the epoch
// its ingest started under (manifest.Meta.StoreEpoch); while the store's is
// still the same, every blob that manifest names is still there, and a
// re-ingest need not lstat each reused file's blob. That lstat into the
// store's fan-out was most of an unchanged re-ingest's time: on a 100k-file
// tree, 2.2-3.7 s with it against 1.4-3.7 s without and 1.8-2.6 s for
// `find -printf '%T@ %s\n'` under a load average of 12 (issue 22). At 1M
// files (make bench-scale, load average 6-9): 8.2-9.0 s against `find`'s
// 9.6 s in the same run; 14.8 s before (15 µs a file).
//
// Blobs go only under the store's exclusive lock (gc, the limit sweeps,
// status recount), so taking it replaces the epoch; Quarantine (verify
// --repair) replaces it itself, and so does a verify that finds a root's
// blob missing (deleted behind vrift's back): the next re-ingest then checks
// every blob again and stores what is gone.
const epochFile = "epoch"

// ReadEpoch returns the removal epoch of the store at root, "" if it has
// none (or it cannot be read: nothing is then trusted).
func ReadEpoch(root string) string {
	b, err := os.ReadFile(filepath.Join(root, epochFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// BumpEpoch replaces the store's removal epoch (see epochFile). Callers
// about to remove blobs must not go on if it fails.
func (s *Store) BumpEpoch() error {
	// One at a time in a process: atomicfile's temp name is per process.
	s.epochMu.Lock()
	defer s.epochMu.Unlock()
	var b [12]byte
	rand.Read(b[:])
	if err := atomicfile.Write(filepath.Join(s.root, epochFile), []byte(hex.EncodeToString(b[:])+"\n"), 0o644); err != nil {
		// A stale epoch must not survive a removal: without the file,
		// nothing trusts it.
		os.Remove(filepath.Join(s.root, epochFile))
		return fmt.Errorf("store removal epoch: %w", err)
	}
	return nil
}
