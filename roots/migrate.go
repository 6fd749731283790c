package roots

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Direct-mode stores made before the registry had owners kept each root
// as <dir>/<id>, a file holding the manifest path (always a manifest read
// in place). migrate rewrites each as a record of the file's owner, then
// removes it. A crash in between leaves both, and the next Open writes
// the same record again, so the move is idempotent. Two processes opening
// one store at once write the same records.

// isLegacyName reports whether name is an old-layout record: an id alone.
func isLegacyName(name string) bool {
	if len(name) != 32 {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (r *Registry) migrate() error {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("open roots %s: %w", r.dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isLegacyName(e.Name()) {
			continue
		}
		if err := r.migrateOne(e.Name()); err != nil {
			return fmt.Errorf("open roots %s: move an old root record: %w", r.dir, err)
		}
	}
	return nil
}

func (r *Registry) migrateOne(name string) error {
	rec, err := r.readLegacy(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // moved by another process
	}
	if err != nil {
		// Torn or foreign: the path it holds cannot be trusted. The file
		// stays for ListAll to report (sweeps refuse while it is there)
		// rather than be guessed at.
		return nil
	}
	if err := r.Put(rec, ""); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(r.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// readLegacy reads the old-layout record name as a record of the file's
// owner (whoever registered it), pinned when it was last written.
func (r *Registry) readLegacy(name string) (Record, error) {
	p := filepath.Join(r.dir, name)
	f, err := os.Open(p)
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Record{}, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return Record{}, fmt.Errorf("%s: %w", p, err)
	}
	mpath := string(b)
	if mpath == "" || ID(mpath) != name {
		return Record{}, fmt.Errorf("%s (old layout): does not hold the manifest path its name is the hash of", p)
	}
	uid := uint32(os.Getuid())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = st.Uid
	}
	return Record{UID: uid, ManifestPath: mpath, PinnedAt: fi.ModTime().UTC(), InPlace: true, ID: name}, nil
}
