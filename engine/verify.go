package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// VerifyResult reports a verification. A clean store has no Corrupt and no
// Missing entries.
type VerifyResult struct {
	Blobs       int64         `json:"blobs"`
	Bytes       int64         `json:"bytes"`
	Corrupt     []string      `json:"corrupt"`
	Quarantined []string      `json:"quarantined"`
	Roots       int           `json:"roots"`
	Missing     []MissingBlob `json:"missing"`
}

// MissingBlob is a manifest entry whose blob is not in the store.
type MissingBlob struct {
	Manifest string `json:"manifest"`
	Path     string `json:"path"`
	Blob     string `json:"blob"`
}

// OK reports whether nothing is wrong.
func (v *VerifyResult) OK() bool { return len(v.Corrupt) == 0 && len(v.Missing) == 0 }

// VerifyBlobs re-hashes every blob in s. With repair, corrupt blobs are moved
// aside so that the next ingest of their real content stores them again.
func VerifyBlobs(ctx context.Context, s *cas.Store, repair bool, res *VerifyResult) error {
	g, gctx := errgroup.WithContext(ctx)
	blobs := make(chan cas.Blob, 64)
	type bad struct {
		key cas.Key
		err error
	}
	bads := make(chan bad, 64)
	g.Go(func() error {
		defer close(blobs)
		return s.Walk(gctx, func(b cas.Blob) error {
			res.Blobs++
			res.Bytes += b.Key.Size
			select {
			case blobs <- b:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	checkers := errgroup.Group{}
	for range runtime.GOMAXPROCS(0) {
		checkers.Go(func() error {
			for b := range blobs {
				if err := s.Check(gctx, b.Key); errors.Is(err, cas.ErrCorrupt) {
					bads <- bad{b.Key, err}
				} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		err := checkers.Wait()
		close(bads)
		return err
	})
	var qerr error
	for b := range bads {
		res.Corrupt = append(res.Corrupt, b.err.Error())
		if repair && qerr == nil {
			dst, err := s.Quarantine(b.key)
			if err != nil {
				qerr = err
				continue
			}
			res.Quarantined = append(res.Quarantined, dst)
		}
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return qerr
}

// VerifyRoot checks that every file the manifest at path records has its blob
// in s.
func VerifyRoot(ctx context.Context, s *cas.Store, path string, res *VerifyResult) error {
	m, err := manifest.Open(path)
	if err != nil {
		return fmt.Errorf("verify root %s: %w", path, err)
	}
	defer m.Close()
	res.Roots++
	missing := len(res.Missing)
	err = m.View(func(r *manifest.Reader) error {
		return r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			if e.Kind == manifest.File && !s.Has(e.Key()) {
				res.Missing = append(res.Missing, MissingBlob{Manifest: path, Path: p, Blob: e.Key().Name()})
			}
			return ctx.Err()
		})
	})
	if len(res.Missing) > missing {
		// Gone behind vrift's back: the next re-ingest must check each
		// blob (and store the missing ones again), not trust the epoch.
		if berr := s.BumpEpoch(); berr != nil && err == nil {
			err = fmt.Errorf("verify root %s: %w", path, berr)
		}
	}
	return err
}

// Verify re-hashes every blob and checks that every root's files are present.
// Roots whose manifest is gone are skipped (gc drops them).
func (d *Direct) Verify(ctx context.Context, opts VerifyOptions) (*VerifyResult, error) {
	paths, err := d.RootManifests()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return Check(ctx, d.Store, paths, true, opts.Repair)
}

// Check is the one verification of both modes: it re-hashes every blob
// when blobs is set (moving corrupt ones aside with repair), and checks
// that every file of every manifest in roots has its blob. Roots whose
// manifest is gone are skipped (gc drops them).
func Check(ctx context.Context, s *cas.Store, roots []string, blobs, repair bool) (*VerifyResult, error) {
	res := &VerifyResult{Corrupt: []string{}, Quarantined: []string{}, Missing: []MissingBlob{}}
	if blobs {
		if err := VerifyBlobs(ctx, s, repair, res); err != nil {
			return res, err
		}
	}
	for _, r := range roots {
		if !exists(r) {
			continue
		}
		if err := VerifyRoot(ctx, s, r, res); err != nil {
			return res, err
		}
	}
	return res, nil
}
