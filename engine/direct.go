package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
)

// Direct is a store used without a daemon: the calling user owns it, writes
// blobs into it and keeps its GC roots beside it.
type Direct struct {
	Store *cas.Store
	Roots *Roots
}

// OpenDirect opens (creating) the per-user store at root.
func OpenDirect(root string) (*Direct, error) {
	s, err := cas.Open(root, cas.Options{DirMode: 0o755})
	if err != nil {
		return nil, err
	}
	roots, err := OpenRoots(filepath.Join(s.Root(), "roots"))
	if err != nil {
		return nil, err
	}
	return &Direct{Store: s, Roots: roots}, nil
}

// batchWriter is the BlobWriter of a direct-mode ingest: puts into one
// batch, made durable together.
type batchWriter struct{ b *cas.Batch }

func (w batchWriter) PutFile(ctx context.Context, f *os.File, exec bool) (cas.PutResult, error) {
	return w.b.Put(ctx, f, exec)
}

func (w batchWriter) Sync(context.Context) error { return w.b.Flush() }

// Ingest runs an ingest against this store. It holds the store lock in shared
// mode throughout, so that a concurrent gc cannot delete a blob this ingest
// has deduplicated against before the manifest that references it is
// registered.
func (d *Direct) Ingest(ctx context.Context, opts IngestOptions) (*IngestResult, error) {
	lock, err := d.Store.LockShared(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	defer lock.Unlock()
	// Temp files of writers that died are never going to be committed.
	d.Store.CleanTemps(tempMaxAge)
	_, _, mpath, _, err := Target(opts.Dir, opts.ManifestPath)
	if err != nil {
		return nil, err
	}
	// Registered first: a manifest that exists is always a root.
	if err := d.Roots.Add(mpath); err != nil {
		return nil, err
	}
	batch := d.Store.NewBatch()
	// A failed ingest leaves no pending temp files behind.
	defer batch.Discard()
	opts.StoreRoot = d.Store.Root()
	opts.Blobs = batchWriter{batch}
	return Ingest(ctx, opts)
}

// Link projects a manifest from this store. The manifest is (re)registered
// as a root, since a linked tree depends on its blobs.
func (d *Direct) Link(ctx context.Context, opts LinkOptions) (*vfs.LinkResult, error) {
	if err := resolveManifest(&opts); err != nil {
		return nil, err
	}
	var err error
	if opts.StoreRoot, err = d.Pin(opts.ManifestPath); err != nil {
		return nil, err
	}
	return Link(ctx, opts)
}

// Pin registers the manifest at mpath as a root and returns the store root
// to project from (see Remote.Pin).
func (d *Direct) Pin(mpath string) (string, error) {
	if err := d.Roots.Add(mpath); err != nil {
		return "", err
	}
	return d.Store.Root(), nil
}

// resolveManifest fills opts.ManifestPath from opts.Project when unset.
func resolveManifest(opts *LinkOptions) error {
	if opts.ManifestPath != "" {
		return nil
	}
	p, err := ProjectManifest(orDot(opts.Project))
	if err != nil {
		return fmt.Errorf("link %w", err)
	}
	opts.ManifestPath = p
	return nil
}

func orDot(s string) string {
	if s == "" {
		return "."
	}
	return s
}
