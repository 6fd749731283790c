package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
)

// LinkOptions configure a link of a project's manifest.
type LinkOptions struct {
	// Project is a directory in the project (default ".").
	Project string
	// ManifestPath overrides the manifest found from Project.
	ManifestPath string
	// To materializes under this directory instead of the project root.
	To      string
	Subtree string
	Method  vfs.Method
	Force   bool
	// AllowOtherOwner and KeepSpecialBits: see fs.LinkOptions.
	AllowOtherOwner bool
	KeepSpecialBits bool
	// StoreRoot is the store's absolute root; projections point into it.
	StoreRoot string
	Warn      func(string)
}

// LinkPinned projects a project's manifest (or one subtree of it) in place
// or under opts.To from opts.StoreRoot, for a manifest already pinned (see
// Link).
func LinkPinned(ctx context.Context, opts LinkOptions) (*vfs.LinkResult, error) {
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	mpath := opts.ManifestPath
	if mpath == "" {
		if opts.Project == "" {
			opts.Project = "."
		}
		var err error
		if mpath, err = ProjectManifest(opts.Project); err != nil {
			return nil, fmt.Errorf("link %w", err)
		}
	}
	m, err := manifest.Open(mpath)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	defer m.Close()
	dest := opts.To
	if dest == "" {
		// The manifest lives in <root>/.vrift/, so this survives a move
		// of the whole project.
		dest = filepath.Dir(filepath.Dir(mpath))
	}
	if abs, err := filepath.Abs(dest); err == nil && within(abs, opts.StoreRoot) {
		return nil, fmt.Errorf("link: %s is inside the store %s; projections go outside it", dest, opts.StoreRoot)
	}
	subtree := manifest.CleanKey(opts.Subtree)
	if opts.Method == vfs.Symlink || opts.Method == "" {
		if has, err := hasNodeModules(m, subtree); err == nil && has {
			opts.Warn("projecting node_modules as symlinks into the store; " + nodeSafe)
		}
	}
	return vfs.Link(ctx, m, vfs.LinkOptions{Dest: dest, Subtree: subtree, Method: opts.Method,
		Force: opts.Force, StoreRoot: opts.StoreRoot, AllowOtherOwner: opts.AllowOtherOwner,
		KeepSpecialBits: opts.KeepSpecialBits})
}

// hasNodeModules reports whether the subtree is, or contains, a node_modules
// directory.
func hasNodeModules(m *manifest.Manifest, subtree string) (bool, error) {
	found := false
	err := m.View(func(r *manifest.Reader) error {
		return r.Walk(subtree, func(p string, e manifest.Entry) error {
			if e.Kind == manifest.Dir && filepath.Base(p) == "node_modules" {
				found = true
				return errStop
			}
			return nil
		})
	})
	if found {
		return true, nil
	}
	return false, err
}

var errStop = errors.New("stop")

// nodeSafe is why symlink projections break Node, and what works instead.
const nodeSafe = "Node resolves symlinks to their real path, so most Node tools will fail on it. " +
	"Node-safe: `vrift ingest --method hardlink` (direct mode), `vrift link --method hardlink` or `--method copy`, or ingest with `--mode phantom` and `vrift mount`"
