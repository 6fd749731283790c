package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// tempMaxAge is how old a temp file must be before it is removed even though
// its writer still seems alive (a recycled pid).
const tempMaxAge = 24 * time.Hour

// DefaultGrace keeps blobs younger than this through a sweep, whether or not
// any root references them.
const DefaultGrace = time.Hour

// GCOptions configure a collection.
type GCOptions struct {
	DryRun bool
	Grace  time.Duration
	// Waiting is called once if in-flight ingests delay the sweep.
	Waiting func()
	// DropStale (daemon mode, root and vrift only) also drops every
	// user's roots whose pinned copy the daemon can no longer read.
	DropStale bool
}

// GCResult reports a collection.
type GCResult struct {
	DryRun       bool     `json:"dry_run"`
	Roots        int      `json:"roots"`
	DroppedRoots []string `json:"dropped_roots"`
	Removed      int64    `json:"removed"`
	FreedBytes   int64    `json:"freed_bytes"`
	Kept         int64    `json:"kept"`
	KeptYoung    int64    `json:"kept_young"`
	Temps        int      `json:"temps_removed"`
}

// MarkLive adds the blob of every file recorded in the manifest at path to
// live. It returns fs.ErrNotExist (wrapped) if the manifest is gone.
func MarkLive(ctx context.Context, path string, live *LiveSet) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("root %s: %w", path, err)
	}
	m, err := manifest.Open(path)
	if err != nil {
		return fmt.Errorf("root %s: %w", path, err)
	}
	defer m.Close()
	return m.View(func(r *manifest.Reader) error {
		return r.Walk(manifest.RootPath, func(_ string, e manifest.Entry) error {
			if e.Kind == manifest.File {
				live.Add(e.Key())
			}
			return ctx.Err()
		})
	})
}

// Sweep deletes (or, dry, counts) every blob not in live and older than
// grace. The caller must hold the store's exclusive lock.
func Sweep(ctx context.Context, s *cas.Store, live *LiveSet, grace time.Duration, dry bool, res *GCResult) error {
	cutoff := time.Now().Add(-grace)
	live.Len() // sorted before the walk
	return s.WalkKeys(ctx, func(k cas.Key, stat func() (cas.Blob, bool, error)) error {
		if live.Has(k) {
			res.Kept++ // no lstat: only a candidate's age and size matter
			return nil
		}
		b, ok, err := stat()
		if err != nil || !ok {
			return err
		}
		if b.ModTime.After(cutoff) {
			res.KeptYoung++
			return nil
		}
		if !dry {
			if err := s.Remove(b.Key); err != nil {
				return err
			}
		}
		res.Removed++
		res.FreedBytes += b.DiskBytes
		return nil
	})
}

// GC drops roots whose manifest is gone, then deletes unreferenced blobs
// older than the grace period. It waits for in-flight ingests (which hold the
// store lock shared) and keeps them out while it runs, so a blob an ingest
// has just deduplicated against is never deleted under it.
func (d *Direct) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	if opts.Grace < 0 {
		return nil, errors.New("gc: negative grace period")
	}
	if err := d.checkOwner("gc"); err != nil {
		return nil, err
	}
	if opts.DropStale {
		return nil, errors.New("gc: --drop-stale is for the daemon's shared store; direct mode already drops roots whose manifest is gone")
	}
	lock, err := d.Store.LockExclusive(ctx, opts.Waiting)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer lock.Unlock()
	recs, err := d.rootRecords(true)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	res := &GCResult{DryRun: opts.DryRun, DroppedRoots: []string{}}
	gone, err := Collect(ctx, d.Store, manifests(recs), nil, opts.Grace, opts.DryRun, res)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	for _, r := range gone {
		res.DroppedRoots = append(res.DroppedRoots, r)
		if !opts.DryRun {
			if err := d.dropRoot(recs, r); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
		}
	}
	return res, nil
}

// mark is the mark phase of both modes' sweeps (Collect, SweepToLimits):
// the blobs of every manifest in roots and those extra adds (a daemon's
// in-flight ingests). A root whose manifest no longer exists is returned in
// gone; one that exists but cannot be read is an error, since it may
// reference anything.
func mark(ctx context.Context, roots []string, extra func(live *LiveSet)) (live *LiveSet, gone []string, err error) {
	live = &LiveSet{}
	for _, r := range roots {
		err := MarkLive(ctx, r, live)
		if errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, r)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w (nothing deleted)", err)
		}
	}
	if extra != nil {
		extra(live)
	}
	return live, gone, nil
}

// Collect is the one mark and sweep of both modes. The caller holds the
// store's lock exclusively. It marks the blobs of every manifest in roots
// and those extra adds (a daemon's in-flight ingests), then deletes (or,
// dry, counts) every other blob older than grace, and removes temp files
// whose writer is gone. A root whose manifest no longer exists is returned
// in gone for the caller to drop; a root that exists but cannot be read
// stops the collection before anything is deleted, since it may reference
// anything.
func Collect(ctx context.Context, s *cas.Store, roots []string, extra func(live *LiveSet), grace time.Duration, dry bool, res *GCResult) (gone []string, err error) {
	live, gone, err := mark(ctx, roots, extra)
	if err != nil {
		return nil, err
	}
	res.Roots += len(roots) - len(gone)
	if err := Sweep(ctx, s, live, grace, dry, res); err != nil {
		return gone, err
	}
	if !dry {
		res.Temps, _ = s.CleanTemps(tempMaxAge)
	}
	return gone, nil
}
