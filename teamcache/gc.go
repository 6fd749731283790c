package teamcache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/pack"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
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

// DefaultRemoteGrace keeps unreferenced objects younger than this: a push
// uploads its blobs before its tree, possibly over hours.
const DefaultRemoteGrace = 24 * time.Hour

// RepackDead: a pack with more than this share of dead bytes (frames no
// tree needs) is rewritten with only its live frames.
const RepackDead = 0.3

// GCResult reports a remote collection.
type GCResult struct {
	DryRun bool `json:"dry_run"`
	Trees  int  `json:"trees"`
	// Live is the number of distinct blobs the trees need.
	Live int `json:"live"`
	// Removed and FreedBytes count deleted objects (blob objects, packs,
	// their indexes and markers) and their bytes.
	Removed    int64 `json:"removed"`
	FreedBytes int64 `json:"freed_bytes"`
	// KeptYoung counts unreferenced objects kept for the grace period.
	KeptYoung int64 `json:"kept_young"`
	// Kept counts live blob objects and packs.
	Kept int64 `json:"kept"`
	// Repacked counts packs rewritten with their live frames only.
	Repacked int64 `json:"repacked"`
	// BadIndexes are pack indexes that were not valid; their packs are
	// treated as orphans.
	BadIndexes []string `json:"bad_indexes,omitempty"`
}

// GC deletes (or, dry, counts) every object no tree needs that is older
// than grace, and repacks packs with much dead data. Every tree is read
// first; a tree that cannot be read or decoded stops the collection before
// anything is deleted, since it may reference anything. Objects whose
// names are not the team cache's are left alone.
//
// Packs go in three steps, so a pull planned from an older index (or a
// tree's locations) finds its frames meanwhile: a pack that is all dead
// loses its index, then the pack; a pack that is partly dead is copied
// (its live frames unchanged) into a new pack with its own index, then
// loses its index and is marked gone; a gone pack, or one without an index
// (a push cut off before its index), is deleted once marker and pack are
// older than grace. A reader that finds a pack gone re-plans from the
// current indexes.
//
// A push that finds a blob present and reuses it can race a concurrent gc
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
	inv, err := LoadInventory(ctx, b, opts)
	if err != nil {
		return nil, fmt.Errorf("remote gc: %w (nothing deleted)", err)
	}
	res.BadIndexes = inv.BadIndexes
	cutoff := time.Now().Add(-grace)
	old := func(key string) bool {
		o, ok := inv.Objects[key]
		return ok && !o.LastModified.After(cutoff)
	}
	// Deletions run in order within a group (an index before its pack)
	// and groups in parallel.
	var groups [][]string
	var repacks []string
	ids := make([]string, 0, len(inv.Packs))
	for id := range inv.Packs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		var liveBytes, deadBytes int64
		for _, e := range inv.Packs[id].Entries {
			if _, ok := live[e.Key]; ok {
				liveBytes += e.Length
			} else {
				deadBytes += e.Length
			}
		}
		switch {
		case deadBytes == 0:
			res.Kept++
		case !old(PackKey(id)):
			res.KeptYoung++
		case liveBytes == 0:
			groups = append(groups, []string{IndexKey(id), PackKey(id)})
		case float64(deadBytes) > RepackDead*float64(liveBytes+deadBytes):
			repacks = append(repacks, id)
		default:
			res.Kept++
		}
	}
	for key := range inv.Objects {
		id, suffix, ok := parsePackKey(key)
		if !ok {
			continue
		}
		if _, committed := inv.Packs[id]; committed {
			continue
		}
		_, hasPack := inv.Objects[PackKey(id)]
		switch {
		case suffix == packSuffix:
			// An orphan: cut off before its index, repacked, or its index
			// is bad. Its marker, if any, goes with it.
			_, marked := inv.Objects[goneKey(id)]
			if !old(key) || (marked && !old(goneKey(id))) {
				res.KeptYoung++
				continue
			}
			g := []string{IndexKey(id), key, goneKey(id)}
			groups = append(groups, g)
		case !hasPack && old(key):
			// An index or a marker left without its pack.
			groups = append(groups, []string{key})
		}
	}
	for key, o := range inv.Objects {
		k, ok := parseZstdKey(key)
		if !ok {
			k, ok = parseBlobKey(key)
		}
		if !ok {
			continue
		}
		switch _, isLive := live[k]; {
		case isLive:
			res.Kept++
		case o.LastModified.After(cutoff):
			res.KeptYoung++
		default:
			groups = append(groups, []string{key})
		}
	}
	for _, g := range groups {
		for _, key := range g {
			if o, ok := inv.Objects[key]; ok {
				res.Removed++
				res.FreedBytes += o.Size
			}
		}
	}
	if dry {
		res.Repacked = int64(len(repacks))
		return res, nil
	}
	res.Removed, res.FreedBytes = 0, 0
	var removed, freed, repacked atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, id := range repacks {
		g.Go(func() error {
			if err := repack(gctx, b, id, inv.Packs[id], live, opts); err != nil {
				return fmt.Errorf("repack %s: %w", PackKey(id), err)
			}
			repacked.Add(1)
			if o, ok := inv.Objects[IndexKey(id)]; ok {
				removed.Add(1)
				freed.Add(o.Size)
			}
			return nil
		})
	}
	for _, grp := range groups {
		g.Go(func() error {
			for _, key := range grp {
				o, ok := inv.Objects[key]
				if !ok {
					continue
				}
				if err := b.Delete(gctx, key); err != nil {
					return err
				}
				removed.Add(1)
				freed.Add(o.Size)
			}
			return nil
		})
	}
	err = g.Wait()
	res.Removed, res.FreedBytes, res.Repacked = removed.Load(), freed.Load(), repacked.Load()
	if err != nil {
		return res, fmt.Errorf("remote gc: %w", err)
	}
	return res, nil
}

// repack copies the live frames of pack id, unchanged, into a new pack
// with its own index, then marks the old pack gone and deletes its index
// (the pack itself goes a grace period later).
func repack(ctx context.Context, b remote.Backend, id string, ix *pack.Index, live map[cas.Key]struct{}, opts Options) error {
	want := map[cas.Key]treefile.Where{}
	for _, e := range ix.Entries {
		if _, ok := live[e.Key]; ok {
			want[e.Key] = treefile.Where{Pack: id, Offset: e.Offset, Length: e.Length}
		}
	}
	plan := planFetch(want, opts.mergeGap(), 1<<62)
	var spans []span
	spans = append(spans, plan.spans...)
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	var bld pack.Builder
	for _, sp := range spans {
		rc, err := b.GetRange(ctx, PackKey(id), sp.off, sp.end-sp.off)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(rc, sp.end-sp.off+1))
		rc.Close()
		if err != nil {
			return err
		}
		if int64(len(data)) != sp.end-sp.off {
			return fmt.Errorf("read %d bytes of a %d-byte range", len(data), sp.end-sp.off)
		}
		for _, fr := range sp.frames {
			bld.Add(fr.k, data[fr.off-sp.off:fr.end()-sp.off])
		}
	}
	newID, data, _, index := bld.Finish()
	if err := b.Put(ctx, PackKey(newID), bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	if err := b.Put(ctx, IndexKey(newID), bytes.NewReader(index), int64(len(index))); err != nil {
		return err
	}
	if err := b.Put(ctx, goneKey(id), bytes.NewReader(nil), 0); err != nil {
		return err
	}
	return b.Delete(ctx, IndexKey(id))
}
