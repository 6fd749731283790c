package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/units"
)

// StoreLimits are a store's size limits (0: none). The daemon applies them
// to the shared store (service/sweep.go); direct mode to the per-user store,
// from the user's config file's [store] table (internal/config). Both sweep with
// SweepToLimits.
type StoreLimits struct {
	// MaxBytes bounds the blobs' logical bytes.
	MaxBytes int64
	// MinFree is the free space to keep on the store's filesystem.
	MinFree int64
}

// IsZero reports whether no limit is set.
func (l StoreLimits) IsZero() bool { return l.MaxBytes <= 0 && l.MinFree <= 0 }

// Over reports whether a store s holding bytes logical bytes is past l,
// and why. MinFree costs a statfs.
func (l StoreLimits) Over(s *cas.Store, bytes int64) (bool, string, error) {
	// max_bytes bounds the blobs' logical bytes; a sparse blob counts its
	// holes (conservative).
	if l.MaxBytes > 0 && bytes > l.MaxBytes {
		return true, fmt.Sprintf("the store holds %s, over its max_bytes of %s", units.FormatSize(bytes), units.FormatSize(l.MaxBytes)), nil
	}
	if l.MinFree > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(s.Root(), &st); err != nil {
			return false, "", fmt.Errorf("statfs %s: %w", s.Root(), err)
		}
		if free := int64(st.Bavail) * int64(st.Bsize); free < l.MinFree {
			return true, fmt.Sprintf("the store's filesystem has %s free, under its min_free of %s", units.FormatSize(free), units.FormatSize(l.MinFree)), nil
		}
	}
	return false, "", nil
}

// OverLimits is Over for s as it is: the totals it keeps on disk (cas
// ledger: every process's saved changes and this one's), else, when they
// cannot be trusted and MaxBytes is set, a walk. A live-ingest watcher
// calls it per commit: with kept totals that costs a small file's read,
// not a walk of the store.
func OverLimits(ctx context.Context, s *cas.Store, l StoreLimits) (bool, string, error) {
	var bytes int64
	if l.MaxBytes > 0 {
		t, err := s.StoredTotals()
		switch {
		case err == nil && t.Trusted:
			bytes = t.Bytes
		default:
			// Untrusted (a writer died unsaved): recounted and saved
			// when nothing else holds the store, so that the next check
			// (a watcher's next commit) reads them again.
			c, _, err := recount(ctx, s)
			if err != nil {
				return false, "", err
			}
			bytes = c.Bytes
		}
	}
	return l.Over(s, bytes)
}

// recount counts s by a walk, saving the count as its totals (saved) when
// its exclusive lock can be had at once: nothing else writes then.
func recount(ctx context.Context, s *cas.Store) (c cas.Counts, saved bool, err error) {
	lock, err := s.TryLockExclusive()
	if err != nil {
		return c, false, err
	}
	if lock == nil || s.Totals() == nil {
		if lock != nil {
			lock.Unlock()
		}
		st, err := ScanStore(ctx, s)
		return cas.Counts{Blobs: st.Blobs, Bytes: st.Bytes, DiskBytes: st.DiskBytes}, false, err
	}
	defer lock.Unlock()
	return s.RecountSaved(ctx)
}

// LimitSweepResult is what SweepToLimits did.
type LimitSweepResult struct {
	// Removed blobs freed FreedBytes on disk, out of Candidates
	// unreferenced ones.
	Removed, FreedBytes int64
	Candidates          int
	// Over is set when the store is still past its limits, Why says how.
	Over bool
	Why  string
	// RemoveErr holds the blobs that could not be removed (skipped).
	RemoveErr error
}

// SweepToLimits is the store-limit sweep of both modes: it removes the
// blobs of s that no manifest in roots (nor extra: a daemon's ingests in
// flight) references, oldest first and regardless of gc's grace, until s is
// under l. The caller holds every writer off (the store's exclusive lock,
// and the daemon's sweep lock). A blob a root references is never removed;
// a root that cannot be read stops the sweep before anything is deleted,
// one whose manifest is gone references nothing. Blobs that cannot be
// removed are skipped and reported in RemoveErr.
func SweepToLimits(ctx context.Context, s *cas.Store, l StoreLimits, roots []string, extra func(live *LiveSet)) (LimitSweepResult, error) {
	var res LimitSweepResult
	live, _, err := mark(ctx, roots, extra)
	if err != nil {
		return res, err
	}
	var cands []cas.Blob
	var walked int64
	if err := s.WalkKeys(ctx, func(k cas.Key, stat func() (cas.Blob, bool, error)) error {
		walked += k.Size
		if live.Has(k) {
			return nil
		}
		b, ok, err := stat()
		if ok {
			cands = append(cands, b)
		}
		return err
	}); err != nil {
		return res, err
	}
	res.Candidates = len(cands)
	// The store's bytes: the walk's, less what this sweep removed, plus
	// the ingests' unflushed blobs (the daemon's sessions; none in direct
	// mode, whose sweep holds every writer off).
	var removedBytes int64
	bytes := func() int64 {
		return walked - removedBytes + s.Totals().PendingBytes()
	}
	slices.SortFunc(cands, func(a, b cas.Blob) int { return a.ModTime.Compare(b.ModTime) })
	var errs []error
	for _, b := range cands {
		over, _, err := l.Over(s, bytes())
		if err != nil {
			return res, err
		}
		if !over {
			break
		}
		if err := s.Remove(b.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Removed++
		res.FreedBytes += b.DiskBytes
		removedBytes += b.Key.Size
	}
	res.RemoveErr = errors.Join(errs...)
	res.Over, res.Why, err = l.Over(s, bytes())
	return res, err
}

// enforceLimits runs before a direct-mode ingest: if the store is past its
// limits, it sweeps (SweepToLimits) under the store's exclusive lock (so
// no ingest is in flight: each holds the lock shared); if that is not
// enough, the ingest is refused (errdefs.ErrQuota).
func (d *Direct) enforceLimits(ctx context.Context) error {
	l := d.Limits
	if l.IsZero() {
		return nil
	}
	over, _, err := OverLimits(ctx, d.Store, l)
	if err != nil || !over {
		return err
	}
	lock, err := d.Store.LockExclusive(ctx, nil)
	if err != nil {
		return fmt.Errorf("store over its limits: %w", err)
	}
	defer lock.Unlock()
	recs, err := d.rootRecords(true)
	if err != nil {
		return fmt.Errorf("store over its limits: %w", err)
	}
	res, err := SweepToLimits(ctx, d.Store, l, manifests(recs), nil)
	if err == nil {
		err = res.RemoveErr
	}
	if err != nil {
		return fmt.Errorf("store over its limits: %w", err)
	}
	if res.Over {
		return fmt.Errorf("%w: the store is full: %s, and every blob left is referenced by a project's manifest; "+
			"delete projects you no longer need and run vrift gc, or raise the limit in your config file ([store] max_bytes, min_free)", errdefs.ErrQuota, res.Why)
	}
	return nil
}
