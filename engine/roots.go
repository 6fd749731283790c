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

	"github.com/vrift/vrift/internal/atomicfile"
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

// Add registers manifestPath as a root.
func (r *Roots) Add(manifestPath string) error {
	f := r.file(manifestPath)
	if b, err := os.ReadFile(f); err == nil && string(b) == manifestPath {
		return nil
	}
	if err := atomicfile.Write(f, []byte(manifestPath), 0o600); err != nil {
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
