package teamcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/pack"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
	"github.com/vrift/vrift/trust"
)

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
	t, err := ReadManifest(mpath)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	res.Files = t.Files()
	if err := PushTree(ctx, store, b, name, t, res, opts); err != nil {
		return nil, err
	}
	res.DurationMS = since(start)
	return res, nil
}

// PushTree uploads the blobs of t that the remote lacks, then t as
// trees/<name> with where each blob is (signed with opts.SignKey, if set),
// adding to res.
//
// Requests: one GET of the tree already under that name (the same content
// there: done, or only a signature added); one LIST and a GET per pack
// index not cached; then a PUT per new pack and its index, a PUT per new
// large blob, and the tree.
func PushTree(ctx context.Context, store *cas.Store, b remote.Backend, name string, t *Tree, res *Result, opts Options) error {
	obj, unchanged, err := Prepare(ctx, store, b, name, t, res, opts)
	if err != nil {
		return err
	}
	return Publish(ctx, b, name, obj, unchanged, res, opts)
}

// Prepare does a push's work up to its commit: it uploads the blobs of t
// the remote lacks and returns the tree object to publish, unsigned, with
// where each blob is. If trees/<name> already records t's content, it
// returns that object as it is (signatures included) and unchanged.
func Prepare(ctx context.Context, store *cas.Store, b remote.Backend, name string, t *Tree, res *Result, opts Options) (obj []byte, unchanged bool, err error) {
	if err := CheckName(name); err != nil {
		return nil, false, err
	}
	keys := t.Keys()
	res.Blobs = int64(len(keys))
	for _, k := range keys {
		if !store.Has(k) {
			return nil, false, fmt.Errorf("push: blob %s is missing from the local store %s (run vrift verify)", k, store.Root())
		}
	}
	// The same tree already there: its blobs are too, since a tree goes up
	// only after its blobs (and remote gc keeps every blob a tree names).
	if old, raw, err := FetchTree(ctx, b, name); err == nil && old.SameContent(t) {
		res.Reused = int64(len(keys))
		return raw, true, nil
	} else if err != nil && !errors.Is(err, remote.ErrNotFound) && !errors.Is(err, treefile.ErrFormat) {
		return nil, false, fmt.Errorf("push: %w", err)
	}
	inv, err := LoadInventory(ctx, b, opts)
	if err != nil {
		return nil, false, fmt.Errorf("push: %w", err)
	}
	where := make(map[cas.Key]treefile.Where, len(keys))
	var small, large []cas.Key
	var total int64
	for _, k := range keys {
		if w, ok := inv.Where(k); ok {
			where[k] = w
			continue
		}
		total += k.Size
		if k.Size > LargeBlob {
			large = append(large, k)
		} else {
			small = append(small, k)
		}
	}
	res.Reused = int64(len(keys) - len(small) - len(large))
	u, err := newUploader(store, b, opts, opts.progress("push", total))
	if err != nil {
		return nil, false, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return u.packs(gctx, small) })
	g.Go(func() error { return u.large(gctx, large) })
	err = g.Wait()
	res.BlobsSent, res.BytesSent = u.blobs.Load(), u.sent.Load()
	if err != nil {
		return nil, false, fmt.Errorf("push %s: %w (no tree written; run push again to resume)", name, err)
	}
	for k, w := range u.where {
		where[k] = w
	}
	out := *t
	out.Where = make([]treefile.Where, len(t.Paths))
	for i, e := range t.Entries {
		if e.Kind == manifest.File {
			out.Where[i] = where[e.Key()]
		}
	}
	if obj, err = out.Encode(); err != nil {
		return nil, false, fmt.Errorf("push %s: %w", name, err)
	}
	return obj, false, nil
}

// Publish commits a prepared push: obj, signed with opts.SignKey if set,
// becomes trees/<name>. An unchanged tree is only signed, if the key has
// not signed it for this name already.
func Publish(ctx context.Context, b remote.Backend, name string, obj []byte, unchanged bool, res *Result, opts Options) error {
	if k := opts.SignKey; k != nil {
		res.Signer = &trust.Signer{Key: k.Name}
		if unchanged {
			return SignUnchanged(ctx, b, name, obj, *k, res)
		}
		var err error
		if obj, err = trust.Sign(obj, name, *k, time.Now()); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}
	if unchanged {
		return nil
	}
	if err := b.Put(ctx, TreeKey(name), bytes.NewReader(obj), int64(len(obj))); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	res.Trees = 1
	res.BytesSent += int64(len(obj))
	return nil
}

// PublishSigned commits a tree a client prepared (through Prepare, in a
// daemon) and signed: every blob it names must be in the remote. If
// trees/<name> holds the same body, the new signatures are merged into
// its block (nothing written if they are there); else obj replaces it.
func PublishSigned(ctx context.Context, b remote.Backend, name string, obj []byte, res *Result, opts Options) error {
	t, err := DecodeTree(obj)
	if err != nil {
		return err
	}
	if blk, _, _ := treefile.Split(obj); blk == nil {
		return fmt.Errorf("push %s: %w: the tree to publish is not signed", name, treefile.ErrFormat)
	}
	inv, err := LoadInventory(ctx, b, opts)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	for _, k := range t.Keys() {
		if _, ok := inv.Where(k); !ok {
			return fmt.Errorf("push %s: blob %s is not in %s (push again to upload it)", name, k, b)
		}
	}
	res.Blobs, res.Files, res.Reused = int64(len(t.Keys())), t.Files(), int64(len(t.Keys()))
	if _, old, err := FetchTree(ctx, b, name); err == nil {
		if merged, same, changed := MergeSignatures(old, obj, name); same {
			if changed {
				if err := b.Put(ctx, TreeKey(name), bytes.NewReader(merged), int64(len(merged))); err != nil {
					return fmt.Errorf("push %s: %w", name, err)
				}
				res.Trees, res.BytesSent = 1, res.BytesSent+int64(len(merged))
			}
			return nil
		}
	}
	if err := b.Put(ctx, TreeKey(name), bytes.NewReader(obj), int64(len(obj))); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	res.Trees, res.BytesSent = 1, res.BytesSent+int64(len(obj))
	return nil
}

// uploader compresses and uploads a push's new blobs.
type uploader struct {
	store  *cas.Store
	b      remote.Backend
	opts   Options
	enc    *zstd.Encoder
	report func(int64)
	done   atomic.Int64 // uncompressed bytes uploaded, for progress

	mu    sync.Mutex
	where map[cas.Key]treefile.Where
	// blobs and sent count what went up (sent in compressed bytes).
	blobs, sent atomic.Int64
}

func newUploader(store *cas.Store, b remote.Backend, opts Options, report func(int64)) (*uploader, error) {
	enc, err := pack.NewEncoder(opts.jobs())
	if err != nil {
		return nil, err
	}
	return &uploader{store: store, b: b, opts: opts, enc: enc, report: report, where: map[cas.Key]treefile.Where{}}, nil
}

func (u *uploader) stored(k cas.Key, w treefile.Where, compressed int64) {
	u.mu.Lock()
	u.where[k] = w
	u.mu.Unlock()
	u.blobs.Add(1)
	u.sent.Add(compressed)
	u.report(u.done.Add(k.Size))
}

// readBlob reads a small blob whole.
func (u *uploader) readBlob(k cas.Key) ([]byte, error) {
	f, err := u.store.OpenBlob(k)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", k, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, k.Size+1))
	if err == nil && int64(len(data)) != k.Size {
		err = fmt.Errorf("%d bytes in the local store (run vrift verify)", len(data))
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", k, err)
	}
	return data, nil
}

// packs compresses keys in parallel, keeps them in order (tree order:
// neighbours in a tree compress and are fetched together), cuts them into
// packs of about PackSize and uploads each pack, then its index.
func (u *uploader) packs(ctx context.Context, keys []cas.Key) error {
	if len(keys) == 0 {
		return nil
	}
	type job struct {
		k     cas.Key
		frame []byte
		err   error
		done  chan struct{}
	}
	jobs := u.opts.jobs()
	g, gctx := errgroup.WithContext(ctx)
	queue := make(chan *job, 4*jobs)
	compressing := make(chan struct{}, jobs)
	g.Go(func() error {
		defer close(queue)
		for _, k := range keys {
			j := &job{k: k, done: make(chan struct{})}
			select {
			case compressing <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			go func() {
				defer func() { <-compressing; close(j.done) }()
				data, err := u.readBlob(j.k)
				if err != nil {
					j.err = err
					return
				}
				j.frame = u.enc.EncodeAll(data, make([]byte, 0, len(data)/2+64))
			}()
			select {
			case queue <- j:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	// At most a few packs in memory and in flight at once.
	uploading := make(chan struct{}, max(2, jobs/4))
	g.Go(func() error {
		var bld pack.Builder
		cut := func() error {
			id, data, ix, index := bld.Finish()
			select {
			case uploading <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			g.Go(func() error {
				defer func() { <-uploading }()
				// The pack, then its index: an index commits its pack.
				if err := u.b.Put(gctx, PackKey(id), bytes.NewReader(data), int64(len(data))); err != nil {
					return err
				}
				if err := u.b.Put(gctx, IndexKey(id), bytes.NewReader(index), int64(len(index))); err != nil {
					return err
				}
				for _, e := range ix.Entries {
					u.stored(e.Key, treefile.Where{Pack: id, Offset: e.Offset, Length: e.Length}, e.Length)
				}
				u.sent.Add(int64(len(data)) - (ix.Entries[len(ix.Entries)-1].End()) + int64(len(index)))
				return nil
			})
			return nil
		}
		for j := range queue {
			select {
			case <-j.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if j.err != nil {
				return j.err
			}
			bld.Add(j.k, j.frame)
			if bld.Size() >= u.opts.packSize() || bld.Len() >= maxFramesPerPack {
				if err := cut(); err != nil {
					return err
				}
			}
		}
		if bld.Len() > 0 {
			return cut()
		}
		return nil
	})
	return g.Wait()
}

// maxFramesPerPack keeps an index small (54 bytes a frame) even for a pack
// of empty files.
const maxFramesPerPack = 1 << 16

// inMemory: large blobs up to this size are compressed in memory, bigger
// ones into a temp file.
const inMemory = 64 << 20

// large uploads each key as its own zstd object, a few at a time.
func (u *uploader) large(ctx context.Context, keys []cas.Key) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(min(u.opts.jobs(), 4))
	for _, k := range keys {
		g.Go(func() error {
			r, size, cleanup, err := u.compressLarge(k)
			if err != nil {
				return err
			}
			defer cleanup()
			if err := u.b.Put(gctx, ZstdKey(k), r, size); err != nil {
				return err
			}
			u.stored(k, treefile.Where{Zstd: true}, size)
			return nil
		})
	}
	return g.Wait()
}

func (u *uploader) compressLarge(k cas.Key) (io.Reader, int64, func(), error) {
	if k.Size <= inMemory {
		data, err := u.readBlob(k)
		if err != nil {
			return nil, 0, nil, err
		}
		z := u.enc.EncodeAll(data, make([]byte, 0, len(data)/2))
		return bytes.NewReader(z), int64(len(z)), func() {}, nil
	}
	src, err := u.store.OpenBlob(k)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("blob %s: %w", k, err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp("", "vrift-push-*.zst")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("blob %s: %w", k, err)
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(pack.Level), zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err == nil {
		var n int64
		n, err = io.Copy(zw, src)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		if err == nil && n != k.Size {
			err = fmt.Errorf("%d bytes in the local store (run vrift verify)", n)
		}
	}
	var size int64
	if err == nil {
		size, err = tmp.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("blob %s: compress: %w", k, err)
	}
	return tmp, size, cleanup, nil
}
