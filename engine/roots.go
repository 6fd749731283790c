package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/vrift/vrift/roots"
)

// Direct mode keeps its GC roots in the one registry both modes use
// (package roots), in <store>/roots: each a manifest read in place,
// recorded under the uid of the caller who registered it. A store that
// more than one user has run direct mode on (root on a user's store) can
// hold a record of the same manifest per owner, so direct mode counts and
// marks manifests, not records.

// AddRoot registers the manifest at mpath as a root. Every ingest and link
// registers, so a manifest already recorded for the caller writes nothing.
func (d *Direct) AddRoot(mpath string) error {
	if rec, err := d.Roots.Get(d.uid, roots.ID(mpath)); err == nil && rec.InPlace {
		return nil
	}
	return d.Roots.Put(roots.Record{UID: d.uid, ManifestPath: mpath, PinnedAt: time.Now().UTC()}, "")
}

// rootRecords lists every owner's roots. For a sweep, a record that cannot
// be read is an error: it may name any manifest, and sweeping without it
// could delete blobs a project still links to.
func (d *Direct) rootRecords(sweep bool) ([]roots.Record, error) {
	recs, bad, err := d.Roots.ListAll()
	if err != nil {
		return nil, err
	}
	if sweep {
		if err := roots.CheckBad(bad); err != nil {
			return nil, fmt.Errorf("%w; delete the record if the project it named is gone", err)
		}
	}
	return recs, nil
}

// manifests is the sorted distinct manifest paths of recs.
func manifests(recs []roots.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.ManifestPath)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// RootManifests lists the manifests registered as roots (unreadable
// records skipped).
func (d *Direct) RootManifests() ([]string, error) {
	recs, err := d.rootRecords(false)
	if err != nil {
		return nil, err
	}
	return manifests(recs), nil
}

// dropRoot removes every owner's record of the manifest at mpath.
func (d *Direct) dropRoot(recs []roots.Record, mpath string) error {
	for _, r := range recs {
		if r.ManifestPath == mpath {
			if err := d.Roots.Remove(r.UID, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
