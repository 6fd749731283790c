// Package teamcache pushes project trees from a local store to an
// S3-compatible object store and pulls them back into another machine's
// store. In the remote (layout.go, docs/tree-format.md):
//
//   - small blobs travel in packs (package pack): packs/<id>.pack, one zstd
//     frame per blob, committed by their index object packs/<id>.idx;
//   - large blobs as one zstd object each, zstd/ab/cd/<name>.zst;
//   - version 1's uncompressed blob objects, blake3/ab/cd/<name>, are still
//     read (and reused by a push), never written;
//   - named trees as trees/<name> in the portable treefile encoding, whose
//     entries say where each blob is.
//
// Blobs always go first and the tree last, so a tree object is the commit
// record: no reader ever sees a tree whose blobs are missing. Downloads are
// verified (BLAKE3 and size) before they enter the store.
package teamcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/trust"
)

// DefaultJobs is the default number of transfers in flight: node_modules
// is mostly small files, where latency, not bandwidth, bounds throughput.
const DefaultJobs = 16

// ErrBadName marks a tree name that cannot be an object key.
var ErrBadName = errors.New("bad tree name")

// nameRE is the name's alphabet; its length is checked apart: a counted
// repetition ({0,199}) compiled at every start of vrift, `status` too, took
// 2,636 allocations and 3-8 ms of a 45 ms start.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// CheckName accepts names made of letters, digits, '.', '_' and '-'
// (not starting with '.' or '-'), at most 200 bytes.
func CheckName(name string) error {
	if len(name) > 200 || !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use letters, digits, '.', '_' and '-' (at most 200, not starting with '.' or '-')", ErrBadName, name)
	}
	return nil
}

// Options tune a transfer.
type Options struct {
	// Jobs bounds the transfers in flight (default DefaultJobs).
	Jobs int
	// Progress, if set, is called once per phase with the phase's total
	// bytes and returns a function to report bytes done.
	Progress func(phase string, totalBytes int64) func(done int64)
	// CacheDir, if set, keeps the remote's pack indexes (immutable by
	// name) between runs, so that learning what a remote holds costs one
	// LIST and a GET per pack index not seen before.
	CacheDir string
	// PackSize is the size a push cuts packs at (default DefaultPackSize).
	PackSize int64
	// MergeGap: a pull reads neighbouring frames of a pack in one range
	// when at most this many unwanted bytes lie between them (default
	// DefaultMergeGap).
	MergeGap int64
	// MaxRange splits a pull's ranges at about this many bytes so they
	// run in parallel (default DefaultMaxRange).
	MaxRange int64
	// TrustOptions sign pushed trees and check pulled ones (trust.go).
	TrustOptions
}

func (o *Options) jobs() int {
	if o.Jobs <= 0 {
		return DefaultJobs
	}
	return o.Jobs
}

func (o *Options) packSize() int64 {
	if o.PackSize <= 0 {
		return DefaultPackSize
	}
	return o.PackSize
}

func (o *Options) mergeGap() int64 {
	if o.MergeGap < 0 {
		return 0
	}
	if o.MergeGap == 0 {
		return DefaultMergeGap
	}
	return o.MergeGap
}

func (o *Options) maxRange() int64 {
	if o.MaxRange <= 0 {
		return DefaultMaxRange
	}
	return o.MaxRange
}

func (o *Options) progress(phase string, total int64) func(int64) {
	if o.Progress == nil {
		return func(int64) {}
	}
	return o.Progress(phase, total)
}

// Result is what a push or pull did (the --json totals).
type Result struct {
	Name         string `json:"name"`
	Remote       string `json:"remote"`
	Trees        int    `json:"trees"`
	Files        int64  `json:"files"`
	Blobs        int64  `json:"blobs"`
	BlobsSent    int64  `json:"blobs_sent"`
	BytesSent    int64  `json:"bytes_sent"`
	BlobsFetched int64  `json:"blobs_fetched"`
	// BytesSent and BytesFetched are the bytes that crossed the wire
	// (compressed blobs, packs, indexes and the tree).
	BytesFetched int64 `json:"bytes_fetched"`
	// StoredBytes are the bytes of the blobs a pull stored (uncompressed).
	StoredBytes int64 `json:"stored_bytes,omitempty"`
	// Reused counts blobs not transferred: already in the remote (push)
	// or in the local store (pull).
	Reused     int64 `json:"reused"`
	DurationMS int64 `json:"duration_ms"`
	// Requests is the number of requests made to the object store (set by
	// callers that count them).
	Requests int64 `json:"requests,omitempty"`
	// ManifestPath is the manifest a pull wrote.
	ManifestPath string `json:"manifest_path,omitempty"`
	// Signer is the signature a pulled tree was accepted by, or a pushed
	// tree was signed with.
	Signer *trust.Signer `json:"signer,omitempty"`
}

// lockFiles are the lock files a default tree name is derived from, in the
// order they are looked for.
var lockFiles = []struct{ file, kind string }{
	{"package-lock.json", "npm"},
	{"pnpm-lock.yaml", "pnpm"},
	{"yarn.lock", "yarn"},
	{"go.sum", "go"},
	{"poetry.lock", "poetry"},
	{"uv.lock", "uv"},
}

// ErrNoLockFile means no lock file was found to derive a name from.
var ErrNoLockFile = errors.New("no lock file (package-lock.json, pnpm-lock.yaml, yarn.lock, go.sum, poetry.lock, uv.lock) to derive a tree name from: pass --name")

// LockName derives a tree name from the first lock file found in dir:
// <kind>-<first 16 hex digits of the BLAKE3 of its bytes>, e.g.
// npm-3f2a9c0d1e4b5a6f. The same lock file gives the same name on every
// machine, so CI can pull by it before installing anything.
func LockName(dir string) (name, lockPath string, err error) {
	for _, lf := range lockFiles {
		p := filepath.Join(dir, lf.file)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("tree name: %w", err)
		}
		h := cas.NewHasher()
		h.Write(b)
		return fmt.Sprintf("%s-%x", lf.kind, h.Sum(nil)[:8]), p, nil
	}
	return "", "", fmt.Errorf("%s: %w", dir, ErrNoLockFile)
}

func since(t time.Time) int64 { return time.Since(t).Milliseconds() }
