// Package rpc owns vrift's wire protocol: JSON-RPC 2.0
// (github.com/sourcegraph/jsonrpc2) over a unix socket, framed LSP-style, with
// file descriptors passed alongside frames (SCM_RIGHTS). It provides the
// stream, a server that identifies every connection by SO_PEERCRED, a client,
// the method names and parameter types, and the error codes. The protocol is
// written down in docs/protocol.md.
package rpc
