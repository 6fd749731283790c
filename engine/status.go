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

// Status describes the store and its roots.
func (d *Direct) Status(ctx context.Context) (*StoreStatus, error) {
	st, err := ScanStore(ctx, d.Store)
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
