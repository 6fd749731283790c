package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Roots is the registry of manifests a store serves: the GC roots. Each root
// is a small file named after the hash of its manifest path and holding that
// path, so registering is idempotent and needs no shared index to update.
type Roots struct{ dir string }

// OpenRoots opens (creating) the registry in dir.
func OpenRoots(dir string) (*Roots, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open roots: %w", err)
	}
	return &Roots{dir: dir}, nil
}

func (r *Roots) file(manifestPath string) string {
	return filepath.Join(r.dir, RootID(manifestPath))
}

// RootID names a root's files in a registry, in either mode: a hash of its
// manifest path, so registering is idempotent.
func RootID(manifestPath string) string {
	sum := sha256.Sum256([]byte(manifestPath))
	return hex.EncodeToString(sum[:16])
}

// WriteFileAtomic replaces path with data (mode 0600): written and fsynced
// under a temporary name, renamed over path, and the directory fsynced, so a
// crash leaves the old file or the new one, never a torn one, and a
// registered root stays registered.
func WriteFileAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
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

// Add registers manifestPath as a root.
func (r *Roots) Add(manifestPath string) error {
	f := r.file(manifestPath)
	if b, err := os.ReadFile(f); err == nil && string(b) == manifestPath {
		return nil
	}
	if err := WriteFileAtomic(f, []byte(manifestPath)); err != nil {
		return fmt.Errorf("register root %s: %w", manifestPath, err)
	}
	return nil
}

// Remove drops manifestPath from the registry.
func (r *Roots) Remove(manifestPath string) error {
	if err := os.Remove(r.file(manifestPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop root %s: %w", manifestPath, err)
	}
	return nil
}

// List returns every registered manifest path.
func (r *Roots) List() ([]string, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("list roots: %w", err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("list roots: %w", err)
		}
		out = append(out, string(b))
	}
	return out, nil
}
