package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/roots"
)

// Direct is a store used without a daemon: the calling user owns it, writes
// blobs into it and keeps its GC roots beside it.
type Direct struct {
	Store *cas.Store
	// Roots are the store's GC roots (roots.go).
	Roots *roots.Registry
	// uid owns the roots this process registers.
	uid uint32
	// Limits are the store's max_bytes and min_free (limits.go).
	Limits StoreLimits
	// shared is set when other users can reach the store's blobs (every
	// directory from / down to the store lets others search it): files
	// others could not read are then kept out, as the daemon does.
	shared bool
}

// OpenDirect opens (creating) the per-user store at root. A new store's
// directory is 0700: blobs are 0444 and the store holds every file the user
// ingests, including ones only they could read, so nobody else may reach it.
func OpenDirect(root string) (*Direct, error) {
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, fmt.Errorf("create store %s: %w", root, err)
	}
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create store %s: %w", root, err)
	}
	s, err := cas.Open(root, cas.Options{DirMode: 0o755, Owner: cas.OwnerDirect, KeepTotals: true})
	if err != nil {
		return nil, err
	}
	reg, err := roots.Open(filepath.Join(s.Root(), "roots"))
	if err != nil {
		return nil, err
	}
	return &Direct{Store: s, Roots: reg, uid: uint32(os.Getuid()), shared: reachableByOthers(s.Root())}, nil
}

// reachableByOthers reports whether users other than the owner can reach
// paths below dir: every directory from / down to dir has o+x.
func reachableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := dir; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Mode&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// batchWriter is the BlobWriter of a direct-mode ingest: puts into one
// batch, made durable together.
type batchWriter struct {
	b   *cas.Batch
	dev uint64
	// share, when set, decides which files may go in: a store others can
	// reach must not turn a 0600 .env into a 0444 blob anyone can read.
	share func(st *unix.Stat_t) bool
}

func (w batchWriter) PutFile(ctx context.Context, f *os.File, exec bool) (cas.PutResult, error) {
	return w.PutFileChecked(ctx, f, exec, nil)
}

// PutFileChecked stores f, running unchanged once f is read and before its
// content is kept (see CheckedPutter).
func (w batchWriter) PutFileChecked(ctx context.Context, f *os.File, exec bool, unchanged func() error) (cas.PutResult, error) {
	if err := w.check(f); err != nil {
		return cas.PutResult{}, err
	}
	return w.b.PutChecked(ctx, f, exec, unchanged)
}

// Adopt takes f's own inode into the store (see Adopter).
func (w batchWriter) Adopt(ctx context.Context, f *os.File, mode uint32, exec bool) (cas.PutResult, error) {
	if err := w.check(f); err != nil {
		return cas.PutResult{}, err
	}
	return w.b.Adopt(ctx, f, mode, exec)
}

// StoreDev is the store's filesystem.
func (w batchWriter) StoreDev() uint64 { return w.dev }

// DiscardAdopted drops the batch's unpublished puts, adoptions among them.
func (w batchWriter) DiscardAdopted() { w.b.Discard() }

// check applies the share policy to the open file f.
func (w batchWriter) check(f *os.File) error {
	if w.share == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if !w.share(&st) {
		return cas.ErrNotShared
	}
	return nil
}

func (w batchWriter) Sync(context.Context) error { return w.b.Flush() }

// Ingest runs an ingest against this store. It holds the store lock in shared
// mode throughout, so that a concurrent gc cannot delete a blob this ingest
// has deduplicated against before the manifest that references it is
// registered.
func (d *Direct) Ingest(ctx context.Context, opts IngestOptions) (*IngestResult, error) {
	if err := d.checkOwner("ingest"); err != nil {
		return nil, err
	}
	if err := d.enforceLimits(ctx); err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
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
	if (opts.Tier == Tier2 || opts.Copy) && opts.Paths == nil && !exists(mpath) {
		// Copies need room; adoption writes no data, so a tight store
		// filesystem is no reason to refuse it. (A watcher's refresh of
		// a few paths is not worth a walk of the tree to size it: a full
		// store fails its write with ENOSPC, and nothing is recorded.
		// Nor is a re-ingest: the store holds most of its tree already,
		// so the walk's sum (every file's size) would overstate what it
		// writes, and the walk stat'ed every file once more: 3 stats a
		// file instead of 2 on a store filesystem under 25% free, as
		// this machine's is.)
		if err := d.Store.Preflight(ctx, opts.Dir); err != nil {
			return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
		}
	}
	// Registered first: a manifest that exists is always a root.
	if err := d.AddRoot(mpath); err != nil {
		return nil, err
	}
	defer func() {
		// A first ingest that failed left no manifest: no root either.
		if !exists(mpath) {
			d.Roots.Remove(d.uid, roots.ID(mpath))
		}
	}()
	batch := d.Store.NewBatch()
	// A failed ingest leaves no pending temp files behind.
	defer batch.Discard()
	opts.StoreRoot = d.Store.Root()
	dev, err := d.Store.Dev()
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	w := batchWriter{b: batch, dev: dev}
	if d.shared {
		// A store others can reach (made before stores were private, or
		// opened up by its owner) takes only what others could read
		// anyway: files with o+r in a directory others can reach.
		reachable := reachableByOthers(opts.Dir)
		w.share = func(st *unix.Stat_t) bool { return reachable && st.Mode&0o004 != 0 }
	}
	opts.Blobs = w
	return Ingest(ctx, opts)
}

// ErrDaemonStore is returned (wrapped) for an operation direct mode must
// not run on a store a daemon manages.
var ErrDaemonStore = errors.New("the store is managed by a daemon")

// checkOwner refuses op on a daemon's store: the daemon keeps its GC roots
// in its own state directory, so a direct-mode gc there would see none and
// sweep every blob, and a direct-mode ingest would register a root the
// daemon never sees.
func (d *Direct) checkOwner(op string) error {
	if d.Store.Owner() == cas.OwnerDaemon {
		return fmt.Errorf("%s: %w (%s): ask the daemon (drop --direct/--store), or run `vrift verify` on it", op, ErrDaemonStore, d.Store.Root())
	}
	return nil
}

// Mode is "direct".
func (d *Direct) Mode() string { return "direct" }

// Close saves this process's changes to the store's totals (cas ledger).
func (d *Direct) Close() error { return d.Store.Close() }

// Pin registers the manifest at mpath as a root and returns the store root
// to project from.
func (d *Direct) Pin(_ context.Context, mpath string) (string, error) {
	if err := d.AddRoot(mpath); err != nil {
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
