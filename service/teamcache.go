package service

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/trust"
)

// TeamCache is the daemon's team cache: the object store it transfers to and
// from with its own credentials (never a caller's), and whether callers may
// push through it.
type TeamCache struct {
	Backend remote.Backend
	// AllowPush lets callers push trees ([remote] push = true). Pulls are
	// always allowed: a user who can reach the daemon may pull any tree in
	// the bucket.
	AllowPush bool
	// Trust is the daemon's trusted keys ([remote] trusted_keys): once it
	// has any, every pull through the daemon must pass it, whatever the
	// caller's own config says (remotePull, trust.go).
	Trust *trust.Policy
	// IndexCache keeps the remote's pack indexes between transfers (the
	// daemon's state dir); "" reads them from the remote each time.
	IndexCache string

	once    sync.Once
	fetcher *teamcache.Fetcher
}

// requests reports the backend's request count when it keeps one.
func requests(b remote.Backend) int64 {
	if s, ok := b.(*remote.S3); ok {
		return s.Stats().Requests()
	}
	return 0
}

func (r *TeamCache) options(jobs int) teamcache.Options {
	return teamcache.Options{Jobs: jobs, CacheDir: r.IndexCache}
}

func (s *Service) teamCache() (*TeamCache, error) {
	r := s.cfg.TeamCache
	if r == nil || r.Backend == nil {
		return nil, errdefs.Newf(errdefs.ErrNotFound, "this daemon has no team cache: set [remote] url (and endpoint, region) in its config file")
	}
	// One fetcher for every caller, so identical concurrent fetches of
	// different users coalesce into one download.
	r.once.Do(func() { r.fetcher = &teamcache.Fetcher{Store: s.store, Remote: r.Backend} })
	return r, nil
}

// remotePull fetches a tree and the blobs of it the shared store lacks
// (each verified before it is stored) and returns the tree; the caller
// records it as its manifest and pins it like any other (link).
func (s *Service) remotePull(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.RemotePullParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	r, err := s.teamCache()
	if err != nil {
		return nil, err
	}
	if err := teamcache.CheckName(p.Name); err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%v", err)
	}
	// A store past max_bytes or min_free is swept first (sweep.go); the
	// user's quota applies at the pin that follows.
	if err := s.checkStore(ctx); err != nil {
		return nil, err
	}
	before := requests(r.Backend)
	// No sweep lock while downloading (that can take long, and a waiting
	// sweep would block every other caller): fetched blobs are younger
	// than any user's grace, and the caller's pin (link) checks under the
	// lock that every blob is present, so a blob swept meanwhile is a
	// reported error, never a broken tree.
	res := &teamcache.Result{Name: p.Name, Remote: r.Backend.String()}
	t, raw, err := teamcache.FetchTree(ctx, r.Backend, p.Name)
	if err == nil {
		// Before any blob enters the shared store.
		res.Signer, err = r.checkTree(p, raw)
	}
	if err == nil {
		res.Trees, res.BytesFetched = 1, int64(len(raw))
		res.Blobs = int64(len(t.Keys()))
		err = r.fetcher.FetchAll(ctx, t, r.options(p.Jobs), res)
	}
	s.auditRemote(c, rpc.MethodRemotePull, p.Name, res, err)
	if err != nil {
		s.cfg.Log.Warn("remote pull failed", "uid", c.Peer.UID, "name", p.Name, "err", err)
		if errors.Is(err, remote.ErrNotFound) {
			return nil, errdefs.Newf(errdefs.ErrNotFound, "%v", err)
		}
		return nil, fmt.Errorf("remote pull: %w", err)
	}
	out := rpcResult(res, requests(r.Backend)-before)
	out.Tree, out.Store, out.Signer = raw, s.store.Root(), res.Signer
	return out, nil
}

// remotePush uploads a tree the caller encoded from its own manifest. The
// tree is decoded and checked first; every blob it names must be in the
// shared store (the caller ingested it), and only blobs the remote lacks
// are sent, then the tree.
func (s *Service) remotePush(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.RemotePushParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	r, err := s.teamCache()
	if err != nil {
		return nil, err
	}
	if !r.AllowPush {
		return nil, errdefs.Newf(errdefs.ErrPermission, "pushing through this daemon is not allowed: its config has no [remote] push = true")
	}
	if err := teamcache.CheckName(p.Name); err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%v", err)
	}
	t, err := teamcache.DecodeTree(p.Tree)
	if err != nil {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "remote push: %v", err)
	}
	before := requests(r.Backend)
	// No sweep lock while uploading: a blob swept meanwhile fails its
	// upload, and then no tree is written.
	res := &teamcache.Result{Name: p.Name, Remote: r.Backend.String(), Files: t.Files()}
	var obj []byte
	var unchanged bool
	switch p.Stage {
	case "":
		err = teamcache.PushTree(ctx, s.store, r.Backend, p.Name, t, res, r.options(p.Jobs))
	case rpc.PushPrepare:
		obj, unchanged, err = teamcache.Prepare(ctx, s.store, r.Backend, p.Name, t, res, r.options(p.Jobs))
	case rpc.PushCommit:
		err = teamcache.PublishSigned(ctx, r.Backend, p.Name, p.Tree, res, r.options(p.Jobs))
	default:
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "remote push: unknown stage %q", p.Stage)
	}
	s.auditRemote(c, rpc.MethodRemotePush, p.Name, res, err)
	if err != nil {
		s.cfg.Log.Warn("remote push failed", "uid", c.Peer.UID, "name", p.Name, "stage", p.Stage, "err", err)
		return nil, fmt.Errorf("remote push: %w", err)
	}
	out := rpcResult(res, requests(r.Backend)-before)
	out.Store, out.Tree, out.Unchanged = s.store.Root(), obj, unchanged
	return out, nil
}

func rpcResult(r *teamcache.Result, reqs int64) *rpc.RemoteResult {
	return &rpc.RemoteResult{Remote: r.Remote, Trees: r.Trees, Blobs: r.Blobs, BlobsSent: r.BlobsSent,
		BytesSent: r.BytesSent, BlobsFetched: r.BlobsFetched, BytesFetched: r.BytesFetched,
		Reused: r.Reused, Requests: reqs}
}

func (s *Service) auditRemote(c *rpc.Call, method, name string, res *teamcache.Result, err error) {
	result := "ok"
	if err != nil {
		result = "error: " + err.Error()
	}
	s.audit.write(auditEntry{UID: c.Peer.UID, PID: c.Peer.PID, Method: method, ClientPath: name,
		BlobsAdded: res.BlobsFetched, BytesAdded: res.StoredBytes, Files: res.Files, Result: result})
}
