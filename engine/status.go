package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// StoreStatus describes a store.
type StoreStatus struct {
	Store     string `json:"store"`
	Blobs     int64  `json:"blobs"`
	Bytes     int64  `json:"bytes"`
	DiskBytes int64  `json:"disk_bytes"`
	Roots     int    `json:"roots"`
	// Totals says where Blobs, Bytes and DiskBytes come from: TotalsKept,
	// TotalsRecounted or TotalsWalked.
	Totals string `json:"totals,omitempty"`
	// Counted is false when the caller may not see store-wide figures
	// (Blobs, Bytes, DiskBytes): a daemon's, for anyone but root and vrift.
	Counted bool `json:"counted"`
	// Daemon is set in daemon mode.
	Daemon *DaemonStatus `json:"-"`
}

// DaemonStatus describes the daemon serving a shared store.
type DaemonStatus struct {
	Version string `json:"version"`
	// Roots are the caller's own (everyone's for root and vrift).
	Roots    []RootInfo `json:"roots"`
	Sessions int        `json:"sessions"`
	// Usage sums the caller's own roots.
	Usage Usage `json:"usage"`
}

// RootInfo is one pinned manifest of a shared store.
type RootInfo struct {
	UID          uint32    `json:"uid"`
	ManifestPath string    `json:"manifest_path"`
	Files        int64     `json:"files"`
	Bytes        int64     `json:"bytes"`
	PinnedAt     time.Time `json:"pinned_at"`
}

// Usage is what one user's pinned manifests reference.
type Usage struct {
	Roots int   `json:"roots"`
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// ProjectStatus describes one project's manifest.
type ProjectStatus struct {
	Manifest string          `json:"manifest"`
	Root     string          `json:"root"`
	Subtrees []string        `json:"subtrees"`
	Totals   manifest.Totals `json:"totals"`
	// DedupRatio is logical bytes over the bytes of distinct content: how
	// many times larger the tree is than what it costs in the store.
	DedupRatio float64   `json:"dedup_ratio"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Where a status's store figures come from.
const (
	// TotalsKept: the totals the store keeps (cas ledger), no walk.
	TotalsKept = "kept"
	// TotalsRecounted: a walk, saved as the store's totals.
	TotalsRecounted = "recounted"
	// TotalsWalked: a walk not saved (another process was writing).
	TotalsWalked = "walked"
)

// StatusOptions configure a status.
type StatusOptions struct {
	// Recount walks the store and saves its totals (which a status does
	// anyway when they cannot be trusted).
	Recount bool
}

// ScanStore counts the blobs in s.
func ScanStore(ctx context.Context, s *cas.Store) (StoreStatus, error) {
	st := StoreStatus{Store: s.Root()}
	err := s.Walk(ctx, func(b cas.Blob) error {
		st.Blobs++
		st.Bytes += b.Key.Size
		st.DiskBytes += b.DiskBytes
		return nil
	})
	return st, err
}

// Status describes the store and its roots. The store's figures are the
// totals it keeps (read in well under a millisecond at any size), unless
// they cannot be trusted (a writer died before saving its changes, or the
// store predates them) or opts.Recount: then a walk counts them (7.2 s at
// 1M blobs), saved as the store's totals when no other process holds the
// store (nothing is being written).
func (d *Direct) Status(ctx context.Context, opts StatusOptions) (*StoreStatus, error) {
	st, err := d.storeTotals(ctx, opts.Recount)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	paths, err := d.RootManifests()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.Roots = len(paths)
	st.Counted = true
	return &st, nil
}

// storeTotals counts the store: kept totals when they can be trusted (and
// not recount), else a walk, saved when the store's exclusive lock can be
// had at once.
func (d *Direct) storeTotals(ctx context.Context, walk bool) (StoreStatus, error) {
	st := StoreStatus{Store: d.Store.Root()}
	if !walk {
		t, err := d.Store.StoredTotals()
		if err == nil && t.Trusted {
			st.Blobs, st.Bytes, st.DiskBytes, st.Totals = t.Blobs, t.Bytes, t.DiskBytes, TotalsKept
			return st, nil
		}
	}
	c, saved, err := recount(ctx, d.Store)
	st.Blobs, st.Bytes, st.DiskBytes, st.Totals = c.Blobs, c.Bytes, c.DiskBytes, TotalsRecounted
	if !saved {
		st.Totals = TotalsWalked
	}
	return st, err
}

// ReadProjectStatus summarises the manifest at path.
func ReadProjectStatus(path string) (ProjectStatus, error) {
	m, err := manifest.Open(path)
	if err != nil {
		return ProjectStatus{}, err
	}
	defer m.Close()
	var ps ProjectStatus
	err = m.View(func(r *manifest.Reader) error {
		meta, err := r.Meta()
		if err != nil {
			return err
		}
		ps = ProjectStatus{Manifest: path, Root: meta.Root, Subtrees: meta.Subtrees,
			Totals: meta.Totals, UpdatedAt: meta.UpdatedAt}
		return nil
	})
	if ps.Totals.UniqueBytes > 0 {
		ps.DedupRatio = float64(ps.Totals.Bytes) / float64(ps.Totals.UniqueBytes)
	}
	return ps, err
}
