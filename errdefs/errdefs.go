// Package errdefs defines the kinds of error callers need to tell apart,
// whichever store answered: the direct store in this process or the daemon
// over the socket. Code wraps them with context (fmt.Errorf("...: %w",
// errdefs.ErrNotFound)) and callers test with errors.Is. The rpc package
// maps each to a JSON-RPC error code and back, so errors.Is works on the
// client for the daemon's refusal too (as containerd's errdefs do over
// gRPC).
package errdefs

import (
	"errors"
	"fmt"
)

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

// ErrInvalidArgument: the request is malformed (a relative or overlong
// path, a negative grace, a descriptor of the wrong kind).
var ErrInvalidArgument = errors.New("invalid argument")

// ErrUntrusted: a team-cache tree the trust policy refuses (unsigned,
// signed by an untrusted key or for another name, altered after signing,
// or a signature block that does not parse).
var ErrUntrusted = errors.New("untrusted tree")

// Newf returns an error of kind whose message is exactly the formatted
// text (no "kind: " prefix): the daemon's refusals keep the wording
// clients and tests know, and errors.Is(err, kind) holds on both sides of
// the socket. Arguments may wrap errors (%w).
func Newf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
