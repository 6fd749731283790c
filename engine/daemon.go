package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/rpc"
)

// Daemon is the shared store of a daemon, reached over its socket (the
// daemon client; package remote is the object store, service.TeamCache the
// daemon's team cache). The CLI walks and opens
// files as the user and passes descriptors; the daemon stores what it reads
// through them; the CLI writes the manifest and the projections, which live
// in the user's tree, and pins the manifest with the daemon as a GC root.
type Daemon struct {
	Client *rpc.Client
}

// Ingest runs the engine's ingest with the daemon as blob writer, then pins
// the new manifest.
func (r *Daemon) Ingest(ctx context.Context, opts IngestOptions) (*IngestResult, error) {
	if opts.Method == vfs.Hardlink {
		// The blobs are vrift's: a user may not link them
		// (fs.protected_hardlinks), and should not hold their inodes.
		return nil, fmt.Errorf("ingest %s: --method hardlink needs direct mode (--direct): the daemon's blobs belong to vrift, and the kernel refuses users hardlinks to them", opts.Dir)
	}
	real, _, mpath, _, err := Target(opts.Dir, opts.ManifestPath)
	if err != nil {
		return nil, err
	}
	var begin rpc.BeginResult
	if err := r.Client.Call(ctx, rpc.MethodIngestBegin, rpc.BeginParams{Path: real}, &begin); err != nil {
		return nil, fmt.Errorf("ingest %s: daemon: %w", opts.Dir, err)
	}
	putter := rpc.NewPutter(r.Client, begin.Session)
	defer putter.Close()
	opts.StoreRoot = begin.Store
	opts.Blobs = putter
	if opts.Workers == 0 {
		opts.Workers = rpc.Workers
	}
	opts.Committed = func(string) error {
		res, err := r.pin(ctx, mpath, begin.Session)
		if err != nil {
			return fmt.Errorf("pin manifest with the daemon: %w", err)
		}
		if res.Warning != "" && opts.Warn != nil {
			opts.Warn(res.Warning) // near the quota
		}
		return nil
	}
	return Ingest(ctx, opts)
}

func (r *Daemon) pin(ctx context.Context, mpath, session string) (*rpc.LinkResult, error) {
	f, err := manifest.OpenFile(mpath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var res rpc.LinkResult
	err = r.Client.CallWithFiles(ctx, rpc.MethodLink, rpc.LinkParams{ManifestPath: mpath, Session: session},
		[]*os.File{f}, &res)
	return &res, err
}

// Pin makes the manifest at mpath a GC root with the daemon, which confirms
// every blob it needs is present, and returns the store root to project
// from. Anything that projects a manifest (link, mount) pins it first.
func (r *Daemon) Pin(ctx context.Context, mpath string) (string, error) {
	res, err := r.pin(ctx, mpath, "")
	if err != nil {
		return "", fmt.Errorf("daemon: %w", err)
	}
	if len(res.Missing) > 0 {
		return "", fmt.Errorf("%d blobs of %s are missing from the shared store, e.g. %s",
			len(res.Missing), mpath, res.Missing[0])
	}
	return res.Store, nil
}

// Mode is "daemon".
func (r *Daemon) Mode() string { return "daemon" }

// Close hangs up.
func (r *Daemon) Close() error { return r.Client.Close() }

// Status asks the daemon for the store and the caller's roots.
func (r *Daemon) Status(ctx context.Context, opts StatusOptions) (*StoreStatus, error) {
	var st rpc.StatusResult
	err := r.Client.Call(ctx, rpc.MethodStatus, rpc.StatusParams{Recount: opts.Recount}, &st)
	if err != nil {
		return nil, fmt.Errorf("status: daemon: %w", err)
	}
	out := &StoreStatus{Store: st.Store, Blobs: st.Blobs, Bytes: st.Bytes, DiskBytes: st.DiskBytes, Roots: len(st.Roots),
		Counted: st.StoreCounted, Totals: daemonTotals(st),
		Daemon: &DaemonStatus{Version: st.Version, Sessions: st.Sessions, Roots: []RootInfo{},
			Usage: Usage{Roots: st.Usage.Roots, Files: st.Usage.Files, Bytes: st.Usage.Bytes}}}
	for _, rt := range st.Roots {
		out.Daemon.Roots = append(out.Daemon.Roots, RootInfo(rt))
	}
	return out, nil
}

func daemonTotals(st rpc.StatusResult) string {
	switch {
	case !st.StoreCounted:
		return ""
	case st.Recounted:
		return TotalsRecounted
	}
	return TotalsKept
}

func (r *Daemon) status(ctx context.Context) (rpc.StatusResult, error) {
	var st rpc.StatusResult
	err := r.Client.Call(ctx, rpc.MethodStatus, nil, &st)
	return st, err
}

// GC drops the caller's roots whose manifest is gone (only the caller can
// see that) and runs the daemon's sweep.
func (r *Daemon) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	st, err := r.status(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: daemon: %w", err)
	}
	uid := uint32(os.Getuid())
	var drop []string
	for _, root := range st.Roots {
		if root.UID != uid {
			continue
		}
		if _, err := os.Stat(root.ManifestPath); errors.Is(err, fs.ErrNotExist) {
			drop = append(drop, root.ManifestPath)
		}
	}
	var res rpc.GCResult
	err = r.Client.Call(ctx, rpc.MethodGC, rpc.GCParams{DryRun: opts.DryRun, Grace: opts.Grace, Drop: drop, DropStale: opts.DropStale}, &res)
	if err != nil {
		return nil, fmt.Errorf("gc: daemon: %w", err)
	}
	return &GCResult{DryRun: res.DryRun, Roots: res.Roots, DroppedRoots: res.DroppedRoots, Removed: res.Removed,
		FreedBytes: res.FreedBytes, Kept: res.Kept, KeptYoung: res.KeptYoung}, nil
}

// ErrRepairShared refuses verify --repair through the daemon: it changes
// the shared store.
var ErrRepairShared = errors.New("verify --repair changes the shared store: run it as the daemon's user " +
	"(sudo -u vrift vrift --direct --store /var/lib/vrift/the_source verify --repair)")

// Verify asks the daemon to re-hash the store and check the caller's roots.
func (r *Daemon) Verify(ctx context.Context, opts VerifyOptions) (*VerifyResult, error) {
	if opts.Repair {
		return nil, ErrRepairShared
	}
	var res rpc.VerifyResult
	if err := r.Client.Call(ctx, rpc.MethodVerify, nil, &res); err != nil {
		return nil, fmt.Errorf("verify: daemon: %w", err)
	}
	out := &VerifyResult{Blobs: res.Blobs, Bytes: res.Bytes, Corrupt: res.Corrupt, Roots: res.Roots,
		Quarantined: []string{}, Missing: []MissingBlob{}}
	for _, m := range res.Missing {
		out.Missing = append(out.Missing, MissingBlob{Blob: m})
	}
	return out, nil
}

// DefaultSocket is where the CLI looks for a daemon: the RFC's path, which
// on macOS lies in the home of the daemon's user, _vrift (see
// packaging/launchd).
func DefaultSocket() string {
	if isDarwin {
		return "/Users/_vrift/Library/Application Support/vrift/daemon.sock"
	}
	return "/run/vrift/daemon.sock"
}

// ErrDaemonUnavailable is returned (wrapped) when a daemon socket exists but
// cannot be used.
var ErrDaemonUnavailable = errors.New("daemon unavailable")

// Connect dials the daemon at socket. It returns nil (no error), meaning
// direct mode, only when there is no socket at all: no daemon is installed
// or set up there. A socket that exists but cannot be used (refused,
// permission denied, no answer) is an error naming the socket and the
// reason: silently falling back would put the caller's files into a
// per-user store instead of the shared one they expect, with other
// privacy rules; --direct says so explicitly.
func Connect(ctx context.Context, socket string) (*Daemon, error) {
	if !SocketExists(socket) {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, socket)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot use the daemon socket %s (%v); start the daemon "+
			"(systemctl start vrift-daemon.socket) or pass --direct to work on your own store",
			ErrDaemonUnavailable, socket, causeOf(err))
	}
	return &Daemon{Client: c}, nil
}

// causeOf is the innermost error, without the path and op wrappers that
// would repeat the socket's name.
func causeOf(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
