package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vrift/vrift/manifest"
)

// projectMarkers are files or directories whose presence makes a directory a
// project root.
var projectMarkers = []string{"package.json", "go.mod", "Cargo.toml", "pyproject.toml", "setup.py", ".git"}

// FindProjectRoot walks up from dir (dir included) to the nearest directory
// holding a manifest or a project marker, whichever comes first. Failing
// that, the project root is dir's parent. dir must be absolute and clean.
func FindProjectRoot(dir string) string {
	for d := dir; ; {
		if isProjectRoot(d) {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if parent := filepath.Dir(dir); parent != dir {
		return parent
	}
	return dir
}

func isProjectRoot(d string) bool {
	// ~/.vrift holds the direct-mode store, not a project, even though it
	// looks like a manifest's directory.
	if filepath.Base(d) == manifest.DirName {
		return false
	}
	if exists(manifest.PathFor(d)) {
		return true
	}
	for _, m := range projectMarkers {
		if exists(filepath.Join(d, m)) {
			return true
		}
	}
	return false
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// resolveDir makes dir absolute, resolves symlinks and checks it is a
// directory, with the errors a user should see.
func resolveDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	info, err := os.Stat(abs)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", errors.New("no such directory")
		}
		return "", err
	}
	if !info.IsDir() {
		return "", errors.New("not a directory")
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	return real, nil
}

// ProjectManifest finds the manifest of the project containing dir: the
// nearest manifest or project marker at or above it.
func ProjectManifest(dir string) (string, error) {
	real, err := resolveDir(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dir, err)
	}
	for d := real; ; d = filepath.Dir(d) {
		if p := manifest.PathFor(d); exists(p) {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s: no manifest here or above (run vrift ingest first)", dir)
		}
	}
}
