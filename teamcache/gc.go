package teamcache

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/remote"
)

// TreeInfo describes one named tree in a remote.
type TreeInfo struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// List returns the remote's named trees, by name.
func List(ctx context.Context, b remote.Backend) ([]TreeInfo, error) {
	out := []TreeInfo{}
	err := b.List(ctx, TreePrefix, func(o remote.ObjectInfo) error {
		name := strings.TrimPrefix(o.Key, TreePrefix)
		if CheckName(name) == nil {
			out = append(out, TreeInfo{Name: name, Size: o.Size, Modified: o.LastModified})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remote ls: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DefaultRemoteGrace keeps unreferenced blobs younger than this: a push
// uploads its blobs before its tree, possibly over hours.
const DefaultRemoteGrace = 24 * time.Hour

// GCResult reports a remote collection.
type GCResult struct {
	DryRun     bool  `json:"dry_run"`
	Trees      int   `json:"trees"`
	Live       int   `json:"live"`
	Removed    int64 `json:"removed"`
	FreedBytes int64 `json:"freed_bytes"`
	KeptYoung  int64 `json:"kept_young"`
	Kept       int64 `json:"kept"`
}

// GC deletes (or, dry, counts) every blob object no tree references that is
// older than grace. Every tree is read first; a tree that cannot be read or
// decoded stops the collection before anything is deleted, since it may
// reference anything. Objects under blake3/ whose names are not blob names
// are left alone.
//
// A push that finds a blob present and skips it can race a concurrent gc
// deleting that (then unreferenced, old) blob; run gc when no push is
// running, or with a grace longer than any push.
func GC(ctx context.Context, b remote.Backend, grace time.Duration, dry bool, opts Options) (*GCResult, error) {
	if grace < 0 {
		return nil, fmt.Errorf("remote gc: negative grace period")
	}
	res := &GCResult{DryRun: dry}
	trees, err := List(ctx, b)
	if err != nil {
		return nil, err
	}
	live := map[cas.Key]struct{}{}
	for _, ti := range trees {
		t, _, err := FetchTree(ctx, b, ti.Name)
		if err != nil {
			return nil, fmt.Errorf("remote gc: %w (nothing deleted)", err)
		}
		for _, k := range t.Keys() {
			live[k] = struct{}{}
		}
		res.Trees++
	}
	res.Live = len(live)
	cutoff := time.Now().Add(-grace)
	var doomed []remote.ObjectInfo
	err = b.List(ctx, BlobPrefix, func(o remote.ObjectInfo) error {
		k, err := cas.ParseName(path.Base(o.Key))
		if err != nil || BlobKey(k) != o.Key {
			return nil
		}
		switch _, ok := live[k]; {
		case ok:
			res.Kept++
		case o.LastModified.After(cutoff):
			res.KeptYoung++
		default:
			doomed = append(doomed, o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remote gc: %w", err)
	}
	var removed, freed atomic.Int64
	if !dry {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.jobs())
		for _, o := range doomed {
			g.Go(func() error {
				if err := b.Delete(gctx, o.Key); err != nil {
					return err
				}
				removed.Add(1)
				freed.Add(o.Size)
				return nil
			})
		}
		err = g.Wait()
		res.Removed, res.FreedBytes = removed.Load(), freed.Load()
		if err != nil {
			return res, fmt.Errorf("remote gc: %w", err)
		}
		return res, nil
	}
	for _, o := range doomed {
		res.Removed++
		res.FreedBytes += o.Size
	}
	return res, nil
}
