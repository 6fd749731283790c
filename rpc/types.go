package rpc

import "time"

// Method names.
const (
	MethodStatus      = "status"
	MethodIngest      = "ingest"       // the spec's path-based ingest: refused, see CodeNeedDescriptors
	MethodIngestBegin = "ingest.begin" // opens a session (an in-flight GC root)
	MethodIngestPut   = "ingest.put"   // stores the files passed as descriptors
	MethodIngestFlush = "ingest.flush" // makes the session's blobs durable
	MethodLink        = "link"         // pins a manifest (passed as a descriptor), reports missing blobs
	MethodGC          = "gc"
	MethodVerify      = "verify"
)

// IngestParams are the spec's ingest parameters.
type IngestParams struct {
	Path string `json:"path"`
	Tier string `json:"tier,omitempty"`
	Mode string `json:"mode,omitempty"`
}

// BeginParams open an ingest session.
type BeginParams struct {
	// Path is the directory being ingested, for the audit log.
	Path string `json:"path"`
}

// BeginResult names the session and the store blobs go to.
type BeginResult struct {
	Session string `json:"session"`
	Store   string `json:"store"`
}

// PutParams describe the descriptors passed with an ingest.put frame, in
// order: one entry per descriptor.
type PutParams struct {
	Session string    `json:"session"`
	Files   []PutFile `json:"files"`
}

// PutFile describes one passed descriptor.
type PutFile struct {
	// Name is the file's path, for messages and the audit log only; the
	// daemon never opens it.
	Name string `json:"name"`
	Exec bool   `json:"exec"`
}

// PutResult is the outcome for one descriptor.
type PutResult struct {
	// Blob is the blob name (<hash>_<size>[_x].bin) when stored.
	Blob string `json:"blob,omitempty"`
	New  bool   `json:"new,omitempty"`
	// Private is set when the file is not world-readable and the daemon
	// does not share private files: it was not stored.
	Private bool   `json:"private,omitempty"`
	Error   string `json:"error,omitempty"`
}

// PutResults answer an ingest.put.
type PutResults struct {
	Results []PutResult `json:"results"`
}

// SessionParams name a session.
type SessionParams struct {
	Session string `json:"session"`
}

// LinkParams pin a manifest, passed as the frame's one descriptor.
type LinkParams struct {
	// ManifestPath is where the caller keeps the manifest; it names the
	// root and lets the caller's gc drop it once the file is gone.
	ManifestPath string `json:"manifest_path"`
	// Session, if set, ends that ingest session: its blobs are now held
	// by the pinned manifest.
	Session string `json:"session,omitempty"`
}

// LinkResult reports a pin.
type LinkResult struct {
	Files   int64    `json:"files"`
	Missing []string `json:"missing"`
	// Store is the store root the manifest's blobs are in, for projecting.
	Store string `json:"store"`
	// Warning, if set, is for the user (near their quota).
	Warning string `json:"warning,omitempty"`
}

// Root is one pinned manifest.
type Root struct {
	UID          uint32    `json:"uid"`
	ManifestPath string    `json:"manifest_path"`
	Files        int64     `json:"files"`
	Bytes        int64     `json:"bytes"`
	PinnedAt     time.Time `json:"pinned_at"`
}

// StatusParams ask for a status; all optional (a nil params is fine).
type StatusParams struct {
	// Recount (root and vrift) walks the store and saves its totals
	// before answering.
	Recount bool `json:"recount,omitempty"`
}

// StatusResult describes the daemon and, scoped to the caller, its roots.
type StatusResult struct {
	Mode      string `json:"mode"`
	Version   string `json:"version"`
	Store     string `json:"store"`
	Blobs     int64  `json:"blobs"`
	Bytes     int64  `json:"bytes"`
	DiskBytes int64  `json:"disk_bytes"`
	// StoreCounted is set when Blobs, Bytes and DiskBytes are filled in:
	// store-wide figures are for root and vrift only.
	StoreCounted bool `json:"store_counted"`
	// Recounted is set when the figures come from a walk just made.
	Recounted bool `json:"recounted,omitempty"`
	// Roots are the caller's own (everyone's for root and vrift).
	Roots    []Root `json:"roots"`
	Sessions int    `json:"sessions"`
	Caller   Peer   `json:"caller"`
	// Usage sums the caller's own roots.
	Usage Usage `json:"usage"`
}

// Usage is what one user's pinned manifests reference.
type Usage struct {
	Roots int   `json:"roots"`
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// GCParams run a collection.
type GCParams struct {
	DryRun bool          `json:"dry_run"`
	Grace  time.Duration `json:"grace"`
	// Drop lists the caller's roots (by manifest path) whose manifest is
	// gone; only the caller can see that, since the daemon cannot read
	// home directories.
	Drop []string `json:"drop"`
	// DropStale (root and vrift only) also drops every user's roots whose
	// pinned copy the daemon can no longer read as a manifest.
	DropStale bool `json:"drop_stale,omitempty"`
}

// GCResult reports a collection.
type GCResult struct {
	DryRun       bool     `json:"dry_run"`
	Roots        int      `json:"roots"`
	DroppedRoots []string `json:"dropped_roots"`
	Removed      int64    `json:"removed"`
	FreedBytes   int64    `json:"freed_bytes"`
	Kept         int64    `json:"kept"`
	KeptYoung    int64    `json:"kept_young"`
}

// VerifyResult reports a verification of the shared store.
type VerifyResult struct {
	Blobs   int64    `json:"blobs"`
	Bytes   int64    `json:"bytes"`
	Corrupt []string `json:"corrupt"`
	Roots   int      `json:"roots"`
	Missing []string `json:"missing"`
}
