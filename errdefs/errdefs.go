// Package errdefs defines the kinds of error callers need to tell apart,
// whichever store answered: the direct store in this process or the daemon
// over the socket. Code wraps them with context (fmt.Errorf("...: %w",
// errdefs.ErrNotFound)) and callers test with errors.Is. The rpc package
// maps each to a JSON-RPC error code and back, so errors.Is works on the
// client for the daemon's refusal too (as containerd's errdefs do over
// gRPC).
package errdefs

import "errors"

var (
	// ErrNotFound: the session, root or blob named does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPermission: the caller may not do this (another user's session or
	// root, an admin-only operation, a file the caller could not read).
	ErrPermission = errors.New("permission denied")
	// ErrQuota: a usage limit of the caller would be exceeded.
	ErrQuota = errors.New("quota exceeded")
	// ErrBusy: the daemon is shutting down, overloaded (too many
	// connections or calls) or the store is locked: retry later.
	ErrBusy = errors.New("busy")
	// ErrNeedDescriptors: the method takes open file descriptors, not
	// paths; the daemon never opens a path on a caller's behalf.
	ErrNeedDescriptors = errors.New("descriptors required")
)
