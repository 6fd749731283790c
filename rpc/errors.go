package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/vrift/vrift/errdefs"
)

// Error codes. The first five are JSON-RPC 2.0's own; the rest are vrift's
// application codes, in the range the specification leaves to servers.
const (
	CodeParseError     = jsonrpc2.CodeParseError     // -32700: the frame body is not JSON
	CodeInvalidRequest = jsonrpc2.CodeInvalidRequest // -32600: not a JSON-RPC 2.0 request
	CodeMethodNotFound = jsonrpc2.CodeMethodNotFound // -32601: unknown method
	CodeInvalidParams  = jsonrpc2.CodeInvalidParams  // -32602: params missing or of the wrong shape
	CodeInternalError  = jsonrpc2.CodeInternalError  // -32603: the daemon failed

	// CodePermission: the caller may not do this (another user's root, a
	// file the caller could not read, an admin-only operation).
	CodePermission = -32001
	// CodeNotFound: the session, root or blob named does not exist.
	CodeNotFound = -32002
	// CodeQuota: the caller's usage limit would be exceeded.
	CodeQuota = -32003
	// CodeBusy: the daemon is shutting down or the store is locked.
	CodeBusy = -32004
	// CodeNeedDescriptors: the method takes file descriptors, not paths:
	// the daemon never opens a path on a caller's behalf.
	CodeNeedDescriptors = -32005
	// CodeUntrusted: the daemon's trusted keys refuse the team-cache tree
	// (unsigned, untrusted signer, signed for another name, altered).
	CodeUntrusted = -32006
)

// Errorf builds a JSON-RPC error with a code.
func Errorf(code int64, format string, args ...any) *jsonrpc2.Error {
	return &jsonrpc2.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// kinds maps vrift's application codes to the errdefs sentinels, both ways.
var kinds = []struct {
	code int64
	err  error
}{
	{CodePermission, errdefs.ErrPermission},
	{CodeNotFound, errdefs.ErrNotFound},
	{CodeQuota, errdefs.ErrQuota},
	{CodeBusy, errdefs.ErrBusy},
	{CodeNeedDescriptors, errdefs.ErrNeedDescriptors},
	{CodeInvalidParams, errdefs.ErrInvalidArgument},
	{CodeUntrusted, errdefs.ErrUntrusted},
}

// Error is an error reply as the client sees it. It matches (errors.Is)
// the errdefs sentinel of its code, so a caller tells a daemon's quota
// refusal from a failure without looking at codes.
type Error struct {
	Code    int64
	Message string
	// Data is the error's data member, if any (a quota refusal's
	// QuotaData).
	Data json.RawMessage
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	for _, k := range kinds {
		if k.code == e.Code {
			return target == k.err
		}
	}
	return false
}

// fromWire turns a reply's error into an *Error; other errors (the
// connection failed) are returned as they are.
func fromWire(err error) error {
	var je *jsonrpc2.Error
	if errors.As(err, &je) {
		e := &Error{Code: je.Code, Message: je.Message}
		if je.Data != nil {
			e.Data = *je.Data
		}
		return e
	}
	return err
}

// toWire is the error reply for a handler's error: a *jsonrpc2.Error or
// *Error is sent as it is; an error wrapping an errdefs sentinel is sent
// with that sentinel's code and the error's full message; anything else is
// nil (the caller answers -32603).
func toWire(err error) *jsonrpc2.Error {
	var je *jsonrpc2.Error
	if errors.As(err, &je) {
		return je
	}
	var e *Error
	if errors.As(err, &e) {
		return &jsonrpc2.Error{Code: e.Code, Message: e.Message}
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return &jsonrpc2.Error{Code: k.code, Message: err.Error()}
		}
	}
	return nil
}

// CodeOf returns the JSON-RPC code err would be (or was) sent with: the
// code of a reply, of a *jsonrpc2.Error, or of the errdefs sentinel err
// wraps; 0 for any other error.
func CodeOf(err error) int64 {
	if err == nil {
		return 0
	}
	if w := toWire(err); w != nil {
		return w.Code
	}
	return 0
}

// errCanceled reports whether err comes from a call's context ending (the
// caller hung up, the per-call limit passed, or the daemon is stopping).
func errCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
