package teamcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
)

// maxTree bounds a tree object's compressed size (a million-file tree is a
// few tens of MiB).
const maxTree = 1 << 30

// Tree is a decoded tree object.
type Tree struct {
	Header  treefile.Header
	Paths   []string
	Entries []manifest.Entry
}

// Keys returns the distinct blobs the tree's files need.
func (t *Tree) Keys() []cas.Key {
	seen := map[cas.Key]struct{}{}
	var out []cas.Key
	for _, e := range t.Entries {
		if e.Kind != manifest.File {
			continue
		}
		if _, ok := seen[e.Key()]; !ok {
			seen[e.Key()] = struct{}{}
			out = append(out, e.Key())
		}
	}
	return out
}

// Files counts the tree's regular files.
func (t *Tree) Files() int64 {
	var n int64
	for _, e := range t.Entries {
		if e.Kind == manifest.File {
			n++
		}
	}
	return n
}

// FetchTree downloads and decodes trees/<name>, and returns the raw object
// too.
func FetchTree(ctx context.Context, b remote.Backend, name string) (*Tree, []byte, error) {
	if err := CheckName(name); err != nil {
		return nil, nil, err
	}
	rc, err := b.Get(ctx, TreeKey(name))
	if err != nil {
		if errors.Is(err, remote.ErrNotFound) {
			return nil, nil, fmt.Errorf("no tree named %q in %s: %w", name, b, err)
		}
		return nil, nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxTree+1))
	if err != nil {
		return nil, nil, err
	}
	if len(raw) > maxTree {
		return nil, nil, fmt.Errorf("tree %s: larger than %d bytes", name, maxTree)
	}
	t, err := DecodeTree(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("tree %s in %s: %w", name, b, err)
	}
	return t, raw, nil
}

// DecodeTree decodes (and validates) a tree object.
func DecodeTree(raw []byte) (*Tree, error) {
	t := &Tree{}
	blk, body, err := treefile.Split(raw)
	if err != nil {
		return nil, err
	}
	t.Header, err = treefile.Read(bytes.NewReader(body), func(p string, e manifest.Entry) error {
		t.Paths = append(t.Paths, p)
		t.Entries = append(t.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if blk != nil && t.Header.Version < 2 {
		return nil, fmt.Errorf("%w: a signed tree of version %d (signatures need version 2)", treefile.ErrFormat, t.Header.Version)
	}
	return t, nil
}

// Fetcher downloads blobs into a store, each verified before it is stored.
// Concurrent fetches of the same blob through one Fetcher are coalesced
// into one download.
type Fetcher struct {
	Store  *cas.Store
	Remote remote.Backend
	group  singleflight.Group
}

// fetchAttempts is how often a download cut off mid-body is tried (the
// client already retries failed requests).
const fetchAttempts = 3

// Fetch downloads blob k into batch unless the store has it, and reports
// whether it transferred it. A download whose BLAKE3 or size is not k's is
// an error wrapping cas.ErrMismatch that names the object; nothing of it is
// stored.
func (f *Fetcher) Fetch(ctx context.Context, batch *cas.Batch, k cas.Key) (bool, error) {
	v, err, _ := f.group.Do(k.Name(), func() (any, error) {
		var err error
		for attempt := 0; attempt < fetchAttempts; attempt++ {
			if err = f.fetchOnce(ctx, batch, k); err == nil {
				return batch, nil
			}
			if errors.Is(err, cas.ErrMismatch) || errors.Is(err, remote.ErrNotFound) ||
				errors.Is(err, remote.ErrAuth) || ctx.Err() != nil {
				break
			}
			select {
			case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil, err
	})
	if err != nil {
		return false, err
	}
	// A fetch coalesced with another caller's went into that caller's
	// batch: make it durable and named before this caller relies on it.
	if other, _ := v.(*cas.Batch); other != batch {
		if err := other.Flush(); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (f *Fetcher) fetchOnce(ctx context.Context, batch *cas.Batch, k cas.Key) error {
	rc, err := f.Remote.Get(ctx, BlobKey(k))
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := batch.PutExpect(ctx, rc, k); err != nil {
		if errors.Is(err, cas.ErrMismatch) {
			return fmt.Errorf("blob object %s/%s: %w (not stored)", f.Remote, BlobKey(k), err)
		}
		return fmt.Errorf("blob %s: %w", k, err)
	}
	return nil
}

// FetchAll fetches every key the store lacks, with bounded parallelism, and
// makes them durable. It adds to res.BlobsFetched, BytesFetched and Reused.
func (f *Fetcher) FetchAll(ctx context.Context, keys []cas.Key, opts Options, res *Result) error {
	var missing []cas.Key
	var total int64
	for _, k := range keys {
		if f.Store.Has(k) {
			res.Reused++
			continue
		}
		missing = append(missing, k)
		total += k.Size
	}
	report := opts.progress("pull", total)
	batch := f.Store.NewBatch()
	defer batch.Discard()
	var got, blobs atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, k := range missing {
		g.Go(func() error {
			fetched, err := f.Fetch(gctx, batch, k)
			if err != nil {
				return err
			}
			if fetched {
				blobs.Add(1)
				report(got.Add(k.Size))
			}
			return nil
		})
	}
	err := g.Wait()
	res.BlobsFetched += blobs.Load()
	res.BytesFetched += got.Load()
	if err != nil {
		return err
	}
	return batch.Flush()
}

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
	if err := f.FetchAll(ctx, keys, opts, res); err != nil {
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
