// Package remote is the object-store side of the team cache: a small Backend
// interface (what the team cache needs from a bucket and nothing more), its
// implementation over S3 with minio-go and an in-memory one for tests (one
// backend suite runs against both), plus the remote's configuration (URL,
// endpoint, region, credentials).
package remote

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Stat and Get for an object that does not exist.
var ErrNotFound = errors.New("no such object")

// ErrRange means a server answered a range read with other bytes than
// the range asked for (a whole object, another range): some S3-compatible
// servers ignore a Range they do not like, and reading on would take the
// wrong bytes for the wanted ones.
var ErrRange = errors.New("the object store did not answer with the requested range")

// ErrAuth means the object store refused the credentials (unknown access
// key, bad secret, expired token) or the request (access denied).
var ErrAuth = errors.New("the object store refused the credentials")

// ErrNoCredentials means no credentials were found in the environment or a
// credentials file.
var ErrNoCredentials = errors.New("no object store credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a credentials file (~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE)")

// ObjectInfo describes one object. Keys are relative to the remote's prefix.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time
	// ETag as the server reports it (for a single-part upload, usually
	// the MD5 of the content; never relied on alone).
	ETag string
}

// Backend is what the team cache needs from an object store. Keys are
// relative to the remote's prefix and use "/" separators. Implementations
// must be safe for concurrent use, retry transient failures themselves,
// and never put a secret in an error.
type Backend interface {
	// Stat returns the object's info, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Put stores size bytes from r as key. A reader never sees a partial
	// object: it appears whole or not at all.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object for reading, or returns an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes of the object from offset, in one
	// request. Fewer bytes mean the object is shorter; an answer that is
	// not the requested range is an error wrapping ErrRange.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// List calls fn for every object whose key starts with prefix.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the remote (s3://bucket/prefix), for messages.
	String() string
}
