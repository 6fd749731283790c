package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/trust"
)

// TransferOptions configure a push or pull through a team cache.
type TransferOptions struct {
	// Backend is the team cache, in direct mode. A daemon transfers with
	// the remote and credentials of its own config, never a user's: Daemon
	// refuses a Backend.
	Backend remote.Backend
	teamcache.Options
}

// ErrNoRemote is returned (wrapped) when direct mode has no team cache to
// transfer with.
var ErrNoRemote = errors.New("no remote configured")

// Push uploads the project's tree (the manifest at mpath) as name: the
// blobs the remote lacks first, then the tree.
func (d *Direct) Push(ctx context.Context, mpath, name string, opts TransferOptions) (*teamcache.Result, error) {
	if opts.Backend == nil {
		return nil, fmt.Errorf("push: %w (--remote s3://bucket/prefix, or [remote] in the config)", ErrNoRemote)
	}
	return teamcache.Push(ctx, d.Store, mpath, opts.Backend, name, opts.Options)
}

// Pull fetches the tree name and the blobs the store lacks, and records it
// as the manifest of the project at root, registered as a root.
func (d *Direct) Pull(ctx context.Context, name, root string, opts TransferOptions) (*teamcache.Result, error) {
	if opts.Backend == nil {
		return nil, fmt.Errorf("pull: %w (--remote s3://bucket/prefix, or [remote] in the config)", ErrNoRemote)
	}
	return teamcache.Pull(ctx, d.Store, opts.Backend, name, root, d.AddRoot, opts.Options)
}

// errDaemonRemote refuses a user's remote in daemon mode.
var errDaemonRemote = errors.New("in daemon mode the daemon uses the remote in its own config")

// Push has the daemon upload the tree from the shared store with its own
// credentials (if its config allows pushing).
func (r *Daemon) Push(ctx context.Context, mpath, name string, opts TransferOptions) (*teamcache.Result, error) {
	if opts.Backend != nil {
		return nil, errDaemonRemote
	}
	start := time.Now()
	tree, _, files, err := teamcache.EncodeManifest(mpath)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	params := rpc.RemotePushParams{Name: name, Tree: tree, Jobs: opts.Jobs}
	k := opts.SignKey
	if k != nil {
		// The user's key signs here: the daemon never holds it. The
		// daemon uploads the blobs and says where they are (prepare),
		// this signs the tree that records it, the daemon publishes it
		// (commit).
		params.Stage = rpc.PushPrepare
	}
	var out rpc.RemoteResult
	if err := r.Client.Call(ctx, rpc.MethodRemotePush, params, &out); err != nil {
		return nil, fmt.Errorf("push %s: daemon: %w", name, err)
	}
	res := fromRPC(name, &out)
	if k != nil {
		res.Signer = &trust.Signer{Key: k.Name}
		if !out.Unchanged || !trust.HasSignature(out.Tree, name, k.Public()) {
			signed, err := trust.Sign(out.Tree, name, *k, time.Now())
			if err != nil {
				return nil, fmt.Errorf("push %s: %w", name, err)
			}
			var done rpc.RemoteResult
			commit := rpc.RemotePushParams{Name: name, Tree: signed, Jobs: opts.Jobs, Stage: rpc.PushCommit}
			if err := r.Client.Call(ctx, rpc.MethodRemotePush, commit, &done); err != nil {
				return nil, fmt.Errorf("push %s: daemon: %w", name, err)
			}
			res.Trees, res.BytesSent, res.Requests = done.Trees, res.BytesSent+done.BytesSent, res.Requests+done.Requests
		}
	}
	res.Files = files
	res.DurationMS = time.Since(start).Milliseconds()
	return res, nil
}

// Pull has the daemon fetch the tree into the shared store, then records
// the tree it returns as the manifest of the project at root; linking pins
// it.
func (r *Daemon) Pull(ctx context.Context, name, root string, opts TransferOptions) (*teamcache.Result, error) {
	if opts.Backend != nil {
		return nil, errDaemonRemote
	}
	start := time.Now()
	var out rpc.RemoteResult
	// The daemon checks the tree against its trusted keys and the user's
	// before fetching a blob; the user's only add to the daemon's.
	params := rpc.RemotePullParams{Name: name, Jobs: opts.Jobs, TrustedKeys: opts.Policy.Keys(), AllowUnsigned: opts.AllowUnsigned}
	if err := r.Client.Call(ctx, rpc.MethodRemotePull, params, &out); err != nil {
		return nil, fmt.Errorf("pull %s: daemon: %w", name, err)
	}
	// Again here, so --allow-unsigned warns as in direct mode (and a
	// daemon that skipped the check is caught).
	if _, err := opts.CheckTree(name, out.Tree); err != nil {
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	t, err := teamcache.DecodeTree(out.Tree)
	if err != nil {
		return nil, fmt.Errorf("pull %s: tree from the daemon: %w", name, err)
	}
	mpath := manifest.PathFor(root)
	if err := teamcache.WriteManifest(mpath, root, t); err != nil {
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	res := fromRPC(name, &out)
	res.Files, res.ManifestPath, res.Signer = t.Files(), mpath, out.Signer
	res.DurationMS = time.Since(start).Milliseconds()
	return res, nil
}

func fromRPC(name string, o *rpc.RemoteResult) *teamcache.Result {
	return &teamcache.Result{Name: name, Remote: o.Remote, Trees: o.Trees, Blobs: o.Blobs,
		BlobsSent: o.BlobsSent, BytesSent: o.BytesSent, BlobsFetched: o.BlobsFetched,
		BytesFetched: o.BytesFetched, Reused: o.Reused, Requests: o.Requests}
}
