package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/units"
)

// link pins the caller's manifest: the daemon keeps its own copy (it cannot
// read the caller's, which lives in a home directory and whose LMDB lock
// file it could not open), so the copy is a GC root owned by the caller.
func (s *Service) link(ctx context.Context, c *rpc.Call) (any, error) {
	files := c.Files()
	defer closeAll(files)
	var p rpc.LinkParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, errdefs.Newf(errdefs.ErrNeedDescriptors, "link: pass the manifest as exactly one descriptor (got %d)", len(files))
	}
	if !filepath.IsAbs(p.ManifestPath) {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "link: manifest_path must be absolute")
	}
	if err := checkPath("link", p.ManifestPath); err != nil {
		return nil, err
	}
	var sess *session
	if p.Session != "" {
		var err error
		if sess, err = s.session(c, p.Session); err != nil {
			return nil, err
		}
		if err := sess.flush(); err != nil {
			return nil, fmt.Errorf("link: flush: %w", err)
		}
	}
	rec, res, err := s.pin(ctx, c.Peer.UID, p.ManifestPath, files[0], sess)
	if err != nil {
		if sess != nil {
			s.endSession(sess, "error: "+err.Error())
		}
		return nil, err
	}
	if sess != nil {
		sess.connClose()
		s.endSession(sess, "ok")
		s.metrics.pins.WithLabelValues("ingest").Inc()
	} else {
		s.metrics.pins.WithLabelValues("link").Inc()
	}
	s.cfg.Log.Info("pinned manifest", "uid", c.Peer.UID, "client_path", sanitize(rec.ManifestPath), "files", rec.Files, "missing", len(res.Missing))
	return res, nil
}

// pin copies the caller's manifest (sparsely, bounded by MaxManifest),
// validates it, and publishes it as the caller's root. Copying and parsing
// run without the sweep lock; only checking which blobs are present and
// publishing the root run under it, so a sweep can neither delete a blob
// reported present before the root holds it, nor wait on a slow caller.
func (s *Service) pin(ctx context.Context, uid uint32, manifestPath string, src *os.File, sess *session) (roots.Record, rpc.LinkResult, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return roots.Record{}, rpc.LinkResult{}, errdefs.Newf(errdefs.ErrInvalidArgument, "link: the manifest descriptor is not a regular file")
	}
	if st.Size > s.cfg.MaxManifest {
		return roots.Record{}, rpc.LinkResult{}, errdefs.Newf(errdefs.ErrQuota, "link: manifest of %d bytes is larger than the %d the daemon accepts", st.Size, s.cfg.MaxManifest)
	}
	id := roots.ID(manifestPath)
	if _, err := s.reg.Get(uid, id); err != nil {
		// Not a re-pin: a new root takes a slot.
		n, err := s.reg.Count(uid)
		if err != nil {
			return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
		}
		if n >= s.cfg.MaxRootsPerUser {
			return roots.Record{}, rpc.LinkResult{}, errdefs.Newf(errdefs.ErrQuota,
				"link: you have %d pinned manifests, the most the daemon allows per user; drop some with vrift gc", n)
		}
	}
	tmp, err := s.reg.TempCopy(uid, id)
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = copySparse(ctx, tmp, src, s.cfg.MaxManifest)
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if errors.Is(err, errdefs.ErrQuota) {
		return roots.Record{}, rpc.LinkResult{}, err // its message names link already
	}
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: copy manifest: %w", err)
	}
	if err := checkLMDB(tmp.Name()); err != nil {
		return roots.Record{}, rpc.LinkResult{}, errdefs.Newf(errdefs.ErrInvalidArgument, "link: not a vrift manifest: %v", err)
	}
	rec := roots.Record{UID: uid, ManifestPath: manifestPath, PinnedAt: time.Now().UTC()}
	keys, err := s.walkInChild(ctx, tmp.Name(), &rec)
	os.Remove(tmp.Name() + "-lock")
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, errdefs.Newf(errdefs.ErrInvalidArgument, "link: unreadable manifest: %v", err)
	}
	res := rpc.LinkResult{Missing: []string{}, Files: rec.Files, Store: s.store.Root()}

	s.sw.gcLock.RLock()
	defer s.sw.gcLock.RUnlock()
	for i := range keys.Len() {
		k := decKey(keys.At(i))
		if !s.store.Has(k) && len(res.Missing) < 1000 {
			res.Missing = append(res.Missing, k.Name())
		}
		if err := ctx.Err(); err != nil {
			return roots.Record{}, rpc.LinkResult{}, err
		}
	}
	// The quota check and the accounting's update run under the
	// accounting's lock, so two pins of one user cannot both pass a check
	// that only one of them fits. The session being pinned no longer
	// counts in flight: its blobs are in keys.
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	delta, err := s.acct.Delta(uid, id, keys)
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, err
	}
	lim := s.limit(uid)
	used := s.acct.User(uid).Referenced + s.inFlight(uid, sess)
	if lim > 0 && delta > 0 && used+delta > lim {
		return roots.Record{}, rpc.LinkResult{}, s.quotaError("pinning "+sanitize(manifestPath), uid, used, lim, delta)
	}
	if lim > 0 && float64(used+delta) >= warnFraction*float64(lim) {
		res.Warning = fmt.Sprintf("you use %s of your %s quota on the shared store (%.0f%%)",
			units.FormatSize(used+delta), units.FormatSize(lim), 100*float64(used+delta)/float64(lim))
	}
	if err := s.reg.Put(rec, tmp.Name()); err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
	}
	// A crash before this commits leaves the accounting's record of this
	// root older than the root's record: the next start recounts.
	if err := s.acct.AddRoot(uid, id, rec.PinnedAt.UnixNano(), rec.Files, keys); err != nil {
		if errors.Is(err, errPartial) {
			// Some of its transactions committed: recount now rather
			// than run on references applied in part (the next start
			// would recount anyway, see updateSteps).
			if prs, rerr := s.pinnedRoots(); rerr == nil {
				_, rerr = s.acct.Recount(ctx, prs, s.walkRoot)
				s.cfg.Log.Warn("usage accounting recounted after a pin applied in part", "err", err, "recount_err", rerr)
			}
		}
		return roots.Record{}, rpc.LinkResult{}, err
	}
	return rec, res, nil
}

// walkKeys walks a manifest and adds every file's key to c (the same key
// as often as files have it: c sorts and dedups them in 41 bytes a key,
// where a map of the keys seen cost the reader child of a 1M-file pin
// 250 MB, issue 22), filling rec's totals with checked arithmetic: sizes
// come from the client and a crafted manifest must not overflow them. It
// runs C LMDB on the file: call it in-process only on a copy already
// walked by a child.
func walkKeys(ctx context.Context, path string, rec *roots.Record, c *keyCollector) error {
	m, err := manifest.Open(path)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.View(func(r *manifest.Reader) error {
		if n, err := r.Entries(); err == nil {
			c.grow(n)
		}
		return r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			if e.Kind != manifest.File {
				return ctx.Err()
			}
			if e.Size < 0 || rec.Bytes > math.MaxInt64-e.Size {
				return fmt.Errorf("%s: file sizes overflow", sanitize(p))
			}
			rec.Files++
			rec.Bytes += e.Size
			c.add(e.Key())
			return ctx.Err()
		})
	})
}

// copySparse copies src into dst, at most max bytes (more is a quota
// error), leaving runs of zeros as holes: a sparse manifest stays sparse.
func copySparse(ctx context.Context, dst, src *os.File, max int64) error {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.ReadAt(buf, off)
		if n > 0 {
			if off+int64(n) > max {
				return errdefs.Newf(errdefs.ErrQuota, "link: manifest larger than %d bytes", max)
			}
			for p := 0; p < n; p += 64 << 10 {
				chunk := buf[p:min(n, p+64<<10)]
				if allZero(chunk) {
					continue
				}
				if _, err := dst.WriteAt(chunk, off+int64(p)); err != nil {
					return err
				}
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(off)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// records lists pinned roots: uid's own, or everyone's for all. Records it
// cannot read are left out and logged: what lists roots for display must
// not fail on one bad file (sweeps use sweepRoots, which refuse).
func (s *Service) records(uid uint32, all bool) ([]roots.Record, error) {
	var recs []roots.Record
	var bad []roots.BadRecord
	var err error
	if all {
		recs, bad, err = s.reg.ListAll()
	} else {
		recs, bad, err = s.reg.List(uid)
	}
	for _, b := range bad {
		s.cfg.Log.Warn("unreadable root record skipped (gc refuses to sweep until gc --drop-stale drops it)", "err", b.Err)
	}
	return s.pinned(recs), err
}

// pinned keeps the records with a pinned copy: a record of a manifest in
// place names a user's file, which the daemon never reads (nothing it
// writes makes one; this guards its state directory against a hand-made
// one).
func (s *Service) pinned(recs []roots.Record) []roots.Record {
	out := recs[:0]
	for _, r := range recs {
		if r.HasCopy() {
			out = append(out, r)
		} else {
			s.cfg.Log.Warn("root record without a pinned copy ignored", "uid", r.UID, "id", r.ID)
		}
	}
	return out
}
