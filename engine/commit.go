package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
)

// record walks the tree, stores its content and commits the manifest.
func (in *ingester) record(ctx context.Context) error {
	old, err := in.m.BeginRead()
	if err != nil {
		return err
	}
	defer old.Close()
	oldMeta, err := old.Meta()
	if err != nil {
		return err
	}
	// Read before the walk: a removal after this replaces it, and the
	// next ingest then checks every blob again (cas epochFile).
	epoch := cas.ReadEpoch(in.opts.StoreRoot)

	workers := in.opts.Workers
	if workers <= 0 {
		// Reads and fsyncs block; more workers than cores keeps the disk busy.
		workers = max(8, 4*runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan []hashJob, workers)
	out := make(chan []recorded, 2*workers)

	var producers atomic.Int32
	producers.Store(int32(workers) + 1)
	done := func() {
		if producers.Add(-1) == 0 {
			close(out)
		}
	}
	g.Go(func() error {
		defer done()
		defer close(jobs)
		w := walker{in: in, old: old, jobs: jobs, out: out,
			trustDirs:  oldMeta.Store == in.opts.StoreRoot,
			trustBlobs: oldMeta.Store == in.opts.StoreRoot && epoch != "" && oldMeta.StoreEpoch == epoch,
			racyBefore: time.Now().Add(-racyWindow).UnixNano()}
		if in.opts.Paths != nil {
			if err := w.refresh(gctx, in.opts.Paths); err != nil {
				return err
			}
			return w.flush(gctx)
		}
		in.prune = []string{in.subtree}
		fd, err := in.t.OpenDir(in.subtree)
		if err != nil {
			return fmt.Errorf("open dir %s: %w", vfs.Quote(in.dir), vfs.Cause(err))
		}
		if err := w.walkDir(gctx, os.NewFile(uintptr(fd), in.dir), in.dir, in.subtree); err != nil {
			return err
		}
		return w.flush(gctx)
	})
	for range workers {
		g.Go(func() error {
			defer done()
			for batch := range jobs {
				rs := make([]recorded, 0, len(batch))
				for _, j := range batch {
					r, err := in.hashFile(gctx, j)
					if err != nil {
						return err
					}
					rs = append(rs, r)
				}
				select {
				case out <- rs:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}

	// The manifest write transaction lives on this goroutine (LMDB ties it
	// to one OS thread); everything else feeds it through out.
	seed := maphash.MakeSeed()
	var seen hashSet
	if in.opts.Paths == nil {
		// A whole walk sees about what the manifest holds.
		if n, err := old.Entries(); err == nil {
			seen.grow(n)
			in.unique.grow(int(oldMeta.Totals.Files))
		}
	}
	changed := false
	var lastProgress time.Time
	var synced int64 // in.res.NewBlobs when the store was last synced
	// syncBlobs makes every blob stored so far durable: a commit must never
	// name a blob that a crash could lose (and a blob re-stored for an
	// unchanged entry must be published too).
	syncBlobs := func() error {
		if in.res.NewBlobs > synced {
			if err := in.opts.Blobs.Sync(ctx); err != nil {
				return err
			}
			synced = in.res.NewBlobs
		}
		return nil
	}
	every := in.opts.CommitEvery
	if oldMeta.Store != "" && oldMeta.Store != in.opts.StoreRoot {
		// Parts recorded against another store than the manifest names
		// would mix two stores' blobs until the last part: one commit.
		every = 0
	}
	baseID := old.TxnID()
	commits := 0    // the parts committed so far
	unrecorded := 0 // busy paths seen that the manifest does not hold
	for final := false; !final && err == nil; commits++ {
		err = in.m.Update(func(w *manifest.Writer) error {
			final = true
			written := 0
			for batch := range out {
				for _, r := range batch {
					if r.private {
						in.res.Private++
						in.opts.Warn(fmt.Sprintf("left in place, not stored: %s is not world-readable and other users "+
							"can reach the store (the daemon stores such files only with --share-private; a direct-mode "+
							"store is private once its directory is, e.g. chmod 700 ~/.vrift)",
							vfs.Quote(in.abs(r.path))))
						continue
					}
					seen.add(maphash.String(seed, r.path))
					if r.busy {
						// Kept as recorded: the watcher retries it.
						in.res.Busy = append(in.res.Busy, r.path)
						if _, ok, err := w.Get(r.path); err != nil {
							return err
						} else if !ok {
							unrecorded++
						}
						continue
					}
					if r.unchanged {
						// As the manifest holds it (unless another writer
						// changed it since, whose change then stands).
						in.count(r)
						continue
					}
					wrote, err := w.PutIfChanged(r.path, r.entry)
					if err != nil {
						return err
					}
					if wrote {
						changed = true
						written++
					}
					in.count(r)
				}
				if in.opts.Progress != nil && time.Since(lastProgress) > 100*time.Millisecond {
					in.opts.Progress(in.res.Files, in.res.Bytes)
					lastProgress = time.Now()
				}
				if every > 0 && written >= every {
					final = false
					break
				}
			}
			if !final {
				// A part committed: its entries are each what this ingest
				// records, and nothing is pruned before the walk is done.
				return syncBlobs()
			}
			// Producers are done (out is closed): a failure among them aborts
			// the transaction, leaving the old manifest in place.
			if err := g.Wait(); err != nil {
				return err
			}
			if in.opts.Progress != nil {
				in.opts.Progress(in.res.Files, in.res.Bytes)
			}
			// The two sorts run side by side: after the walk a core is
			// idle, and each was 85 ms of an unchanged 1M-file re-ingest.
			var sorted sync.WaitGroup
			sorted.Add(1)
			go func() {
				defer sorted.Done()
				in.unique.seal()
			}()
			seen.seal()
			sorted.Wait()
			deleted := 0
			n, err := w.Entries()
			if err != nil {
				return err
			}
			// Every entry seen, none of them removed by another writer
			// since the snapshot the walk compared with (the entries
			// taken unchanged from it were not written again): nothing
			// is left to prune, and the scan that would find nothing is
			// skipped (at 1M files it was 0.3-0.4 s of an unchanged
			// re-ingest's 1.6-2.0). A hash collision only makes the
			// count smaller, so the scan runs.
			allSeen := w.TxnID() == baseID+1+uint64(commits) && n == seen.len()-unrecorded
			for _, p := range in.prune {
				if allSeen {
					break
				}
				n, err := w.DeleteUnseen(p, func(p []byte) bool {
					return seen.has(maphash.Bytes(seed, p))
				})
				if err != nil {
					return err
				}
				deleted += n
			}
			if err := syncBlobs(); err != nil {
				return err
			}
			subtrees := addSubtree(oldMeta.Subtrees, in.subtree)
			if !changed && deleted == 0 && slices.Equal(subtrees, oldMeta.Subtrees) && oldMeta.StoreEpoch == epoch {
				return errUnchanged
			}
			meta := oldMeta
			meta.Root = in.root
			meta.Store = in.opts.StoreRoot
			meta.Subtrees = subtrees
			meta.StoreEpoch = epoch
			if meta.Totals, err = w.Count(); err != nil {
				return err
			}
			meta.UpdatedAt = time.Now().UTC()
			return w.SetMeta(meta)
		})
	}
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err != nil {
		// Stop the walk and drain, so that no goroutine stays blocked on out.
		cancel()
		for range out {
		}
		g.Wait()
	}
	return err
}

func (in *ingester) count(r recorded) {
	switch r.entry.Kind {
	case manifest.Dir:
		in.res.Dirs++
		if strings.HasSuffix(r.path, "node_modules") && filepath.Base(r.path) == "node_modules" {
			in.sawNodeModules = true
		}
	case manifest.Symlink:
		in.res.Symlinks++
	case manifest.File:
		in.res.Files++
		in.res.Bytes += r.entry.Size
		in.unique.add(keyHash(r.entry.Key()))
		if r.reused {
			in.res.Reused++
		}
		if !r.projected && in.opts.Tier == Tier1 && in.opts.Mode == Solid {
			in.unprojected.add(maphash.String(in.seed, r.path))
		}
		if r.adopted {
			in.res.Adopted++
		} else if r.newBlob {
			in.res.Copied++
		}
		if r.newBlob {
			in.res.NewBlobs++
			in.res.NewBytes += r.entry.Size
		}
	}
}

// addSubtree adds s to the ingested subtrees, keeping the list free of
// entries that contain one another.
func addSubtree(list []string, s string) []string {
	var out []string
	for _, t := range list {
		if manifest.Within(s, t) {
			return list // already covered
		}
		if !manifest.Within(t, s) {
			out = append(out, t)
		}
	}
	return append(out, s)
}
