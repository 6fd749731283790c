package engine

import (
	"context"
	"fmt"
	"os"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/teamcache"
)

// Store is a content store as the front doors see it, in either mode: Direct
// works on a per-user store in this process, Daemon asks the daemon that owns
// the shared store. Both run this package's ingest, link and view code; the
// daemon adds only transport, identity and policy. A command is written once,
// against Store.
type Store interface {
	// Mode is "direct" or "daemon".
	Mode() string
	// Ingest stores a tree and records it in its project's manifest.
	Ingest(ctx context.Context, opts IngestOptions) (*IngestResult, error)
	// Pin registers the manifest at manifestPath as a GC root, checks its
	// blobs are present, and returns the store root to project from.
	// Anything that projects a manifest (link, mount) pins it first.
	Pin(ctx context.Context, manifestPath string) (storeRoot string, err error)
	// Status describes the store (and, in daemon mode, the daemon and the
	// caller's roots).
	Status(ctx context.Context, opts StatusOptions) (*StoreStatus, error)
	// GC drops roots whose manifest is gone and sweeps unreferenced blobs.
	GC(ctx context.Context, opts GCOptions) (*GCResult, error)
	// Verify re-hashes the blobs and checks the roots' blobs are present.
	Verify(ctx context.Context, opts VerifyOptions) (*VerifyResult, error)
	// Push uploads a project's tree to the team cache under name.
	Push(ctx context.Context, manifestPath, name string, opts TransferOptions) (*teamcache.Result, error)
	// Pull fetches the tree name from the team cache and records it as the
	// manifest of the project at root (link or mount it next).
	Pull(ctx context.Context, name, root string, opts TransferOptions) (*teamcache.Result, error)
	Close() error
}

var (
	_ Store = (*Direct)(nil)
	_ Store = (*Daemon)(nil)
)

// VerifyOptions configure a verification.
type VerifyOptions struct {
	// Repair moves corrupt blobs aside so that the next ingest of their
	// content stores it afresh.
	Repair bool
}

// Open picks the store the way every command does: direct mode on
// directStore when asked (direct), or when no daemon socket exists at
// socket; the daemon otherwise. A socket that exists but cannot be used is
// an error (see Connect).
func Open(ctx context.Context, socket string, direct bool, directStore string) (Store, error) {
	if !direct && socket != "" {
		r, err := Connect(ctx, socket)
		if err != nil || r != nil {
			return r, err
		}
	}
	return OpenDirect(directStore)
}

// SocketExists reports whether anything is at the daemon socket's path.
func SocketExists(socket string) bool {
	_, err := os.Lstat(socket)
	return err == nil
}

// Link pins the project's manifest with s and projects it (or one subtree)
// in place or under opts.To.
func Link(ctx context.Context, s Store, opts LinkOptions) (*vfs.LinkResult, error) {
	if err := resolveManifest(&opts); err != nil {
		return nil, err
	}
	var err error
	if opts.StoreRoot, err = s.Pin(ctx, opts.ManifestPath); err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	return LinkPinned(ctx, opts)
}
