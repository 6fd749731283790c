package teamcache

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
)

// EncodeManifest encodes the manifest at mpath as a tree and returns it with
// the distinct blobs its files need, sorted by name. The encoding is
// deterministic (its date is the manifest's last update), so an unchanged
// manifest encodes to the same bytes.
func EncodeManifest(mpath string) ([]byte, []cas.Key, int64, error) {
	m, err := manifest.Open(mpath)
	if err != nil {
		return nil, nil, 0, err
	}
	defer m.Close()
	var buf bytes.Buffer
	keys := map[cas.Key]struct{}{}
	var files int64
	err = m.View(func(r *manifest.Reader) error {
		meta, err := r.Meta()
		if err != nil {
			return err
		}
		w, err := treefile.NewWriter(&buf, treefile.Header{Created: meta.UpdatedAt.UTC(), Subtrees: meta.Subtrees, Totals: meta.Totals})
		if err != nil {
			return err
		}
		if err := r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			if e.Kind == manifest.File {
				keys[e.Key()] = struct{}{}
				files++
			}
			return w.Add(p, e)
		}); err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("encode %s: %w", mpath, err)
	}
	list := make([]cas.Key, 0, len(keys))
	for k := range keys {
		list = append(list, k)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	return buf.Bytes(), list, files, nil
}

// Push uploads the blobs of the manifest at mpath that the remote lacks,
// then the tree as trees/<name>. Only when every blob is stored does the
// tree go up, so an interrupted push leaves no tree behind, and running it
// again sends only what is still missing.
func Push(ctx context.Context, store *cas.Store, mpath string, b remote.Backend, name string, opts Options) (*Result, error) {
	start := time.Now()
	if err := CheckName(name); err != nil {
		return nil, err
	}
	res := &Result{Name: name, Remote: b.String()}
	tree, keys, files, err := EncodeManifest(mpath)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	res.Files = files
	if err := PushTree(ctx, store, b, name, tree, keys, res, opts); err != nil {
		return nil, err
	}
	res.DurationMS = since(start)
	return res, nil
}

// PushTree uploads the blobs in keys that the remote lacks, then tree as
// trees/<name>, adding to res. keys must be every blob tree names.
func PushTree(ctx context.Context, store *cas.Store, b remote.Backend, name string, tree []byte, keys []cas.Key, res *Result, opts Options) error {
	if err := CheckName(name); err != nil {
		return err
	}
	res.Blobs = int64(len(keys))
	for _, k := range keys {
		if !store.Has(k) {
			return fmt.Errorf("push: blob %s is missing from the local store %s (run vrift verify)", k, store.Root())
		}
	}
	tree, done, err := settleSigned(ctx, b, name, tree, opts, res)
	if err != nil {
		return fmt.Errorf("push %s: sign: %w", name, err)
	}
	if done {
		res.Reused = int64(len(keys))
		return nil
	}
	// The same tree already there: its blobs are too, since a tree goes up
	// only after its blobs (and remote gc keeps every blob a tree names).
	if same, err := sameTree(ctx, b, name, tree); err != nil {
		return fmt.Errorf("push: %w", err)
	} else if same {
		res.Reused = int64(len(keys))
		return nil
	}
	missing, err := Missing(ctx, b, keys, opts)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	res.Reused = int64(len(keys) - len(missing))
	var total int64
	for _, k := range missing {
		total += k.Size
	}
	report := opts.progress("push", total)
	var sent, blobs atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, k := range missing {
		g.Go(func() error {
			if err := uploadBlob(gctx, store, b, k); err != nil {
				return err
			}
			blobs.Add(1)
			report(sent.Add(k.Size))
			return nil
		})
	}
	err = g.Wait()
	res.BlobsSent, res.BytesSent = blobs.Load(), sent.Load()
	if err != nil {
		return fmt.Errorf("push %s: %w (no tree written; run push again to resume)", name, err)
	}
	if err := b.Put(ctx, TreeKey(name), bytes.NewReader(tree), int64(len(tree))); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	res.Trees = 1
	res.BytesSent += int64(len(tree))
	return nil
}

func uploadBlob(ctx context.Context, store *cas.Store, b remote.Backend, k cas.Key) error {
	f, err := store.OpenBlob(k)
	if err != nil {
		return fmt.Errorf("blob %s: %w", k, err)
	}
	defer f.Close()
	return b.Put(ctx, BlobKey(k), f, k.Size)
}

// sameTree reports whether trees/<name> holds exactly tree.
func sameTree(ctx context.Context, b remote.Backend, name string, tree []byte) (bool, error) {
	info, err := b.Stat(ctx, TreeKey(name))
	if errors.Is(err, remote.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.Size != int64(len(tree)) {
		return false, nil
	}
	// Fast path: a single-part object's ETag is the MD5 of its bytes, so
	// a match spares downloading the tree. MD5 is only trusted to say
	// "same" for our own tree bytes against an object of equal size; any
	// other ETag (multipart, encrypted) falls back to comparing bytes.
	if sum := md5.Sum(tree); strings.EqualFold(info.ETag, hex.EncodeToString(sum[:])) {
		return true, nil
	}
	rc, err := b.Get(ctx, TreeKey(name))
	if err != nil {
		return false, err
	}
	defer rc.Close()
	old, err := io.ReadAll(io.LimitReader(rc, int64(len(tree))+1))
	if err != nil {
		return false, err
	}
	return bytes.Equal(old, tree), nil
}

// Missing returns the keys the remote has no object for (or an object of
// the wrong size, such as one cut short by a server that does not write
// atomically). Many keys are checked with one LIST of the blobs, a few
// with a HEAD each.
func Missing(ctx context.Context, b remote.Backend, keys []cas.Key, opts Options) ([]cas.Key, error) {
	threshold := opts.ListThreshold
	if threshold <= 0 {
		threshold = 256
	}
	if len(keys) >= threshold {
		present := make(map[string]int64, len(keys))
		err := b.List(ctx, BlobPrefix, func(o remote.ObjectInfo) error {
			present[o.Key] = o.Size
			return nil
		})
		if err != nil {
			return nil, err
		}
		var out []cas.Key
		for _, k := range keys {
			if size, ok := present[BlobKey(k)]; !ok || size != k.Size {
				out = append(out, k)
			}
		}
		return out, nil
	}
	var mu sync.Mutex
	var out []cas.Key
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, k := range keys {
		g.Go(func() error {
			info, err := b.Stat(gctx, BlobKey(k))
			if err != nil && !errors.Is(err, remote.ErrNotFound) {
				return err
			}
			if err != nil || info.Size != k.Size {
				mu.Lock()
				out = append(out, k)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}
