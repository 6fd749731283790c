package service

import (
	"context"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
)

// openUsage opens the accounting and recounts it when it does not match
// the pinned roots (first start, or a crash between publishing a root and
// recording it).
func (s *Service) openUsage(ctx context.Context) error {
	path := filepath.Join(s.cfg.State, "usage.lmdb")
	acct, err := openAccounting(path)
	if err != nil {
		s.cfg.Log.Warn("usage accounting unreadable; starting it afresh", "err", err)
		removeAccounting(path)
		if acct, err = openAccounting(path); err != nil {
			return err
		}
	}
	s.acct = acct
	roots, err := s.pinnedRoots()
	if err != nil {
		return err
	}
	if err := acct.Matches(roots); err != nil {
		s.cfg.Log.Info("recounting usage from the pinned manifests", "why", err, "roots", len(roots))
		if _, err := acct.Recount(ctx, roots, s.walkRoot); err != nil {
			return err
		}
	}
	return nil
}

// pinnedRoots lists every root on disk as the accounting names them.
func (s *Service) pinnedRoots() ([]pinnedRoot, error) {
	recs, err := s.records(0, true)
	if err != nil {
		return nil, err
	}
	out := make([]pinnedRoot, 0, len(recs))
	for _, r := range recs {
		out = append(out, pinnedRoot{uid: r.UID, id: r.ID, pinnedAt: r.PinnedAt.UnixNano(), path: s.reg.CopyPath(r)})
	}
	return out, nil
}

// walkRoot reads a pinned copy's keys into c. Pinned copies were walked
// by a child before they were published, so reading them in-process is
// safe (see walkKeys).
func (s *Service) walkRoot(ctx context.Context, path string, c *keyCollector) (int64, error) {
	s.sw.copies.Lock() // LMDB: one opener of an environment per process
	defer s.sw.copies.Unlock()
	var rec roots.Record
	err := walkKeys(ctx, path, &rec, c)
	return rec.Files, err
}

// usage answers the usage RPC.
func (s *Service) usage(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.UsageParams
	if len(c.Params) > 0 && string(c.Params) != "null" {
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
	}
	admin := s.admin(c.Peer)
	res := rpc.UsageResult{Users: []rpc.UserUsage{}}
	if p.Recount {
		if !admin {
			return nil, errdefs.Newf(errdefs.ErrPermission, "usage --recount is for root and vrift only")
		}
		s.acct.mu.Lock()
		roots, err := s.pinnedRoots()
		var before map[uint32]Totals
		if err == nil {
			before, err = s.acct.Recount(ctx, roots, s.walkRoot)
		}
		s.acct.mu.Unlock()
		if err != nil {
			return nil, err
		}
		res.Recounted = true
		after := s.acct.All()
		res.Consistent = len(before) == len(after)
		for uid, t := range after {
			if before[uid] != t {
				res.Consistent = false
			}
		}
		if !res.Consistent {
			s.cfg.Log.Warn("usage recount differed from the incremental accounting", "before", before, "after", after)
		}
	}
	recs, err := s.records(c.Peer.UID, admin)
	if err != nil {
		return nil, err
	}
	byUID := map[uint32]*rpc.UserUsage{}
	get := func(uid uint32) *rpc.UserUsage {
		u := byUID[uid]
		if u == nil {
			t := s.acct.User(uid)
			u = &rpc.UserUsage{UID: uid, Referenced: t.Referenced, Exclusive: t.Exclusive, FairShare: t.FairShare,
				InFlight: s.inFlight(uid, nil), Limit: s.limit(uid), Roots: []rpc.RootUsage{}}
			if usr, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
				u.Name = usr.Username
			}
			byUID[uid] = u
		}
		return u
	}
	get(c.Peer.UID)
	if admin {
		for uid := range s.acct.All() {
			get(uid)
		}
	}
	for _, r := range recs {
		info, _, err := s.acct.Root(r.UID, r.ID)
		if err != nil {
			return nil, err
		}
		u := get(r.UID)
		u.Roots = append(u.Roots, rpc.RootUsage{ManifestPath: r.ManifestPath, Files: r.Files, Referenced: info.Bytes})
	}
	for _, u := range byUID {
		slices.SortFunc(u.Roots, func(a, b rpc.RootUsage) int { return strings.Compare(a.ManifestPath, b.ManifestPath) })
		res.Users = append(res.Users, *u)
	}
	slices.SortFunc(res.Users, func(a, b rpc.UserUsage) int { return cmpU32(a.UID, b.UID) })
	if admin {
		t := s.store.Totals().Counts()
		res.StoreBlobs, res.StoreBytes, res.StoreDiskBytes = t.Blobs, t.Bytes, t.DiskBytes
		res.MaxBytes, res.MinFree = s.cfg.MaxStoreBytes, s.cfg.MinFree
	}
	return res, nil
}
