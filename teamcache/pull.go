package teamcache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
)

// WriteManifest records t as the manifest at mpath, for the project rooted
// at root: entries not in t are removed, the rest replaced, in one
// transaction.
func WriteManifest(mpath, root string, t *Tree) error {
	m, err := manifest.Create(mpath)
	if err != nil {
		return err
	}
	defer m.Close()
	seen := make(map[string]struct{}, len(t.Paths))
	for _, p := range t.Paths {
		seen[p] = struct{}{}
	}
	return m.Update(func(w *manifest.Writer) error {
		for i, p := range t.Paths {
			if _, err := w.PutIfChanged(p, t.Entries[i]); err != nil {
				return err
			}
		}
		if _, err := w.DeleteUnseen(manifest.RootPath, func(p []byte) bool {
			_, ok := seen[string(p)]
			return ok
		}); err != nil {
			return err
		}
		totals, err := w.Count()
		if err != nil {
			return err
		}
		return w.SetMeta(manifest.Meta{Root: root, Subtrees: t.Header.Subtrees, Totals: totals, UpdatedAt: t.Header.Created})
	})
}

// Pull fetches trees/<name>, the blobs of it the store lacks (verified),
// and writes the tree as the manifest of the project at root
// (root/.vrift/manifest.lmdb). register is called with the manifest path
// before the store lock is released, to make it a GC root; the caller then
// links or mounts it.
func Pull(ctx context.Context, store *cas.Store, b remote.Backend, name, root string, register func(mpath string) error, opts Options) (*Result, error) {
	start := time.Now()
	res := &Result{Name: name, Remote: b.String()}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	t, raw, err := FetchTree(ctx, b, name)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	// Before a blob is fetched or a file written: the trusted keys.
	if res.Signer, err = opts.CheckTree(name, raw); err != nil {
		return nil, fmt.Errorf("pull: %w (nothing fetched)", err)
	}
	res.Trees, res.BytesFetched = 1, int64(len(raw))
	keys := t.Keys()
	res.Blobs, res.Files = int64(len(keys)), t.Files()
	// Shared, as an ingest holds it: a gc cannot sweep a blob this pull
	// found present before the manifest naming it is registered.
	lock, err := store.LockShared(ctx)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	defer lock.Unlock()
	f := &Fetcher{Store: store, Remote: b}
	if err := f.FetchAll(ctx, t, opts, res); err != nil {
		return res, fmt.Errorf("pull %s: %w", name, err)
	}
	mpath := manifest.PathFor(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return res, fmt.Errorf("pull %s: %w", name, err)
	}
	if err := WriteManifest(mpath, root, t); err != nil {
		return res, fmt.Errorf("pull %s: %w", name, err)
	}
	if register != nil {
		if err := register(mpath); err != nil {
			return res, fmt.Errorf("pull %s: %w", name, err)
		}
	}
	res.ManifestPath = mpath
	res.DurationMS = since(start)
	return res, nil
}
