package rpc

import (
	"errors"
	"fmt"

	"github.com/sourcegraph/jsonrpc2"
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
)

// Errorf builds a JSON-RPC error with a code.
func Errorf(code int64, format string, args ...any) *jsonrpc2.Error {
	return &jsonrpc2.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the JSON-RPC code of err, or 0.
func CodeOf(err error) int64 {
	var e *jsonrpc2.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
