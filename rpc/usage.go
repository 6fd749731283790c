package rpc

// Methods of the quota and metrics phase (P4).
const (
	MethodUsage   = "usage"   // per-user accounting of the shared store
	MethodMetrics = "metrics" // the daemon's Prometheus families, as JSON
)

// UsageParams ask for usage figures.
type UsageParams struct {
	// Recount (root and vrift only) recounts the accounting from the
	// pinned manifests, replaces the incremental figures with it, and
	// reports whether they were equal.
	Recount bool `json:"recount,omitempty"`
}

// UsageResult is the caller's usage (everyone's for root and vrift).
type UsageResult struct {
	Users []UserUsage `json:"users"`
	// Store-wide figures, for root and vrift only (zero otherwise).
	StoreBlobs     int64 `json:"store_blobs,omitempty"`
	StoreBytes     int64 `json:"store_bytes,omitempty"`
	StoreDiskBytes int64 `json:"store_disk_bytes,omitempty"`
	MaxBytes       int64 `json:"max_bytes,omitempty"`
	MinFree        int64 `json:"min_free,omitempty"`
	// Recounted is set by a recount; Consistent says whether the
	// incremental figures equalled the recount (the recount replaces them
	// either way).
	Recounted  bool `json:"recounted,omitempty"`
	Consistent bool `json:"consistent,omitempty"`
}

// UserUsage is one user's accounting. Referenced, Exclusive and FairShare
// cover the user's pinned roots; InFlight is what their open ingest
// sessions add to Referenced for the quota.
type UserUsage struct {
	UID        uint32      `json:"uid"`
	Name       string      `json:"name,omitempty"`
	Referenced int64       `json:"referenced"`
	Exclusive  int64       `json:"exclusive"`
	FairShare  int64       `json:"fair_share"`
	InFlight   int64       `json:"in_flight"`
	Limit      int64       `json:"limit"` // 0: no quota
	Roots      []RootUsage `json:"roots"`
}

// RootUsage is one pinned manifest's share.
type RootUsage struct {
	ManifestPath string `json:"manifest_path"`
	Files        int64  `json:"files"`
	// Referenced is the bytes of the distinct blobs the root references.
	Referenced int64 `json:"referenced"`
}

// QuotaData is the data of a quota refusal (-32003 with a quota): the
// user's referenced bytes now, their limit, and what the refused call
// would have added.
type QuotaData struct {
	UID    uint32 `json:"uid"`
	Used   int64  `json:"used"`
	Limit  int64  `json:"limit"`
	Needed int64  `json:"needed"`
}

// MetricsResult carries the families /metrics serves, in the JSON form of
// the Prometheus data model (io.prometheus.client.MetricFamily).
type MetricsResult struct {
	Families []any `json:"families"`
}
