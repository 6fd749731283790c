package service

import (
	"context"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
)

// status answers everyone with their own roots and sessions. Only root and
// vrift get the store-wide counters: they walk the whole store, and they
// would tell a user when anyone else adds content.
func (s *Service) status(ctx context.Context, c *rpc.Call) (any, error) {
	admin := s.admin(c.Peer)
	res := rpc.StatusResult{Mode: "daemon", Version: s.cfg.Version, Store: s.store.Root(), Roots: []rpc.Root{}, Caller: c.Peer}
	if admin {
		st, err := engine.ScanStore(ctx, s.store)
		if err != nil {
			return nil, err
		}
		res.Blobs, res.Bytes, res.DiskBytes, res.StoreCounted = st.Blobs, st.Bytes, st.DiskBytes, true
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
