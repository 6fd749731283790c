package engine

import (
	"context"
	"fmt"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
)

// ViewOptions configure a read-only view of a project's manifest.
type ViewOptions struct {
	// Project is a directory in the project (default ".").
	Project string
	// Subtree serves one directory of the manifest instead of all of it.
	Subtree       string
	NoPassthrough bool
}

// OpenView pins the project's manifest with s (so gc keeps every blob the
// view serves) and opens a read-only view of it. The caller serves the view
// and closes the returned manifest once the view is down. source names the
// view in the mount table.
func OpenView(ctx context.Context, s Store, opts ViewOptions) (v *vfs.View, m *manifest.Manifest, source string, err error) {
	mpath, err := ProjectManifest(orDot(opts.Project))
	if err != nil {
		return nil, nil, "", fmt.Errorf("mount %w", err)
	}
	storeRoot, err := s.Pin(ctx, mpath)
	if err != nil {
		return nil, nil, "", fmt.Errorf("mount: %w", err)
	}
	if m, err = manifest.Open(mpath); err != nil {
		return nil, nil, "", fmt.Errorf("mount: %w", err)
	}
	sub := manifest.CleanKey(opts.Subtree)
	source = mpath
	if sub != manifest.RootPath {
		var ok bool
		err := m.View(func(r *manifest.Reader) error {
			e, found, err := r.Get(sub)
			ok = found && e.Kind == manifest.Dir
			return err
		})
		if err != nil || !ok {
			m.Close()
			return nil, nil, "", fmt.Errorf("mount: %q is not a directory in %s", sub, mpath)
		}
		source += ":" + sub
	}
	v, err = vfs.NewView(m, vfs.ViewOptions{StoreRoot: storeRoot, Subtree: sub, NoPassthrough: opts.NoPassthrough})
	if err != nil {
		m.Close()
		return nil, nil, "", fmt.Errorf("mount: %w", err)
	}
	return v, m, source, nil
}
