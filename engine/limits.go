package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
)

// StoreLimits are a store's size limits (0: none). The daemon applies them
// to the shared store (service/quota.go); direct mode to the per-user store,
// from ~/.config/vrift/config.toml's [store] table.
type StoreLimits struct {
	// MaxBytes bounds the blobs' logical bytes.
	MaxBytes int64
	// MinFree is the free space to keep on the store's filesystem.
	MinFree int64
}

// overLimits reports whether the store is past its limits, and why. With
// MaxBytes set it walks the store (direct mode keeps no running totals);
// MinFree alone costs a statfs.
func overLimits(ctx context.Context, s *cas.Store, l StoreLimits, bytes *int64) (bool, string, error) {
	if l.MaxBytes > 0 {
		if *bytes < 0 {
			st, err := ScanStore(ctx, s)
			if err != nil {
				return false, "", err
			}
			*bytes = st.Bytes
		}
		if *bytes > l.MaxBytes {
			return true, fmt.Sprintf("the store holds %d bytes, over its max_bytes of %d", *bytes, l.MaxBytes), nil
		}
	}
	if l.MinFree > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(s.Root(), &st); err != nil {
			return false, "", fmt.Errorf("statfs %s: %w", s.Root(), err)
		}
		if free := int64(st.Bavail) * int64(st.Bsize); free < l.MinFree {
			return true, fmt.Sprintf("the store's filesystem has %d bytes free, under its min_free of %d", free, l.MinFree), nil
		}
	}
	return false, "", nil
}

// enforceLimits runs before a direct-mode ingest: if the store is past its
// limits, it sweeps unreferenced blobs, oldest first and regardless of
// gc's grace, under the store's exclusive lock (so no ingest is in flight:
// each holds the lock shared), until the store is under them; if that is
// not enough, the ingest is refused (errdefs.ErrQuota). A blob any root's
// manifest references is never removed.
func (d *Direct) enforceLimits(ctx context.Context) error {
	l := d.Limits
	if l.MaxBytes <= 0 && l.MinFree <= 0 {
		return nil
	}
	bytes := int64(-1)
	over, _, err := overLimits(ctx, d.Store, l, &bytes)
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
	live := map[cas.Key]struct{}{}
	for _, r := range manifests(recs) {
		if err := MarkLive(ctx, r, live); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store over its limits: %w (nothing deleted)", err)
		}
	}
	var cands []cas.Blob
	if err := d.Store.Walk(ctx, func(b cas.Blob) error {
		if _, ok := live[b.Key]; !ok {
			cands = append(cands, b)
		}
		return nil
	}); err != nil {
		return err
	}
	slices.SortFunc(cands, func(a, b cas.Blob) int { return a.ModTime.Compare(b.ModTime) })
	for _, b := range cands {
		if over, _, err := overLimits(ctx, d.Store, l, &bytes); err != nil || !over {
			return err
		}
		if err := d.Store.Remove(b.Key); err != nil {
			return err
		}
		bytes -= b.Key.Size
	}
	if over, why, err := overLimits(ctx, d.Store, l, &bytes); err != nil || over {
		if err == nil {
			err = fmt.Errorf("%w: the store is full: %s, and every blob left is referenced by a project's manifest; "+
				"delete projects you no longer need and run vrift gc, or raise the limit in ~/.config/vrift/config.toml", errdefs.ErrQuota, why)
		}
		return err
	}
	return nil
}
