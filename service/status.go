package service

import (
	"context"
	"fmt"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
)

// status answers everyone with their own roots and sessions. Only root and
// vrift get the store-wide counters (the store's running totals, no walk):
// they would tell a user when anyone else adds content. Recount (root and
// vrift) walks the store first, with every writer held off, and saves the
// walk as the store's totals.
func (s *Service) status(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.StatusParams
	if len(c.Params) > 0 && string(c.Params) != "null" { // older clients send none
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
	}
	admin := s.admin(c.Peer)
	if p.Recount && !admin {
		return nil, errdefs.Newf(errdefs.ErrPermission, "status: --recount is for root and vrift only")
	}
	res := rpc.StatusResult{Mode: "daemon", Version: s.cfg.Version, Store: s.store.Root(), Roots: []rpc.Root{}, Caller: c.Peer}
	if p.Recount {
		s.sw.running.Lock()
		err := s.sw.exclusive(ctx, "status --recount: the store is in use by a direct-mode process", func() error {
			_, err := s.store.Recount(ctx)
			return err
		})
		s.sw.running.Unlock()
		if err != nil {
			return nil, fmt.Errorf("status: recount: %w", err)
		}
		res.Recounted = true
	}
	if admin {
		t := s.store.Totals().Counts()
		res.Blobs, res.Bytes, res.DiskBytes, res.StoreCounted = t.Blobs, t.Bytes, t.DiskBytes, true
	}
	recs, err := s.records(c.Peer.UID, admin)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		res.Roots = append(res.Roots, rpc.Root{UID: r.UID, ManifestPath: r.ManifestPath, Files: r.Files, Bytes: r.Bytes, PinnedAt: r.PinnedAt})
		if r.UID == c.Peer.UID {
			res.Usage.Roots++
			res.Usage.Files += r.Files
			res.Usage.Bytes += r.Bytes
		}
	}
	s.mu.Lock()
	for _, sess := range s.sessions {
		if admin || sess.peer.UID == c.Peer.UID {
			res.Sessions++
		}
	}
	s.mu.Unlock()
	return res, nil
}

// verify re-hashes the whole store for root and vrift (one at a time); any
// other caller gets their own roots checked for missing blobs, which costs
// what their roots cost, not what the store does.
func (s *Service) verify(ctx context.Context, c *rpc.Call) (any, error) {
	admin := s.admin(c.Peer)
	if admin {
		if !s.verifying.TryLock() {
			return nil, errdefs.Newf(errdefs.ErrBusy, "verify: another verify is running; retry when it ends")
		}
		defer s.verifying.Unlock()
	}
	recs, _ := s.records(c.Peer.UID, admin)
	s.sw.copies.Lock()
	vr, err := engine.Check(ctx, s.store, s.copyPaths(recs), admin, false)
	s.sw.copies.Unlock()
	if err != nil {
		return nil, err
	}
	res := rpc.VerifyResult{Blobs: vr.Blobs, Bytes: vr.Bytes, Corrupt: append([]string{}, vr.Corrupt...), Missing: []string{}, Roots: vr.Roots}
	for _, m := range vr.Missing {
		res.Missing = append(res.Missing, m.Blob+" ("+m.Path+")")
	}
	return res, nil
}
