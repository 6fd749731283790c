package rpc

import "github.com/vrift/vrift/trust"

// Team cache methods: the daemon moves blobs between its store and its
// configured remote with its own credentials, never a caller's.
const (
	// MethodRemotePull fetches a named tree and the blobs of it the store
	// lacks (each verified) and returns the tree for the caller to record
	// as its manifest and pin.
	MethodRemotePull = "remote.pull"
	// MethodRemotePush uploads the blobs of a tree the caller encoded from
	// its manifest, then the tree; only when the daemon's config allows.
	MethodRemotePush = "remote.push"
)

// RemotePullParams name the tree to pull.
type RemotePullParams struct {
	Name string `json:"name"`
	Jobs int    `json:"jobs,omitempty"`
	// TrustedKeys are the caller's own trusted keys (NAME:<base64>): the
	// tree must pass them as well as the daemon's. They only ever add to
	// the daemon's policy, never relax it.
	TrustedKeys []string `json:"trusted_keys,omitempty"`
	// AllowUnsigned waives the caller's own trusted keys for this pull;
	// the daemon's still bind.
	AllowUnsigned bool `json:"allow_unsigned,omitempty"`
}

// RemotePushParams carry the tree to push, in the treefile encoding.
type RemotePushParams struct {
	Name string `json:"name"`
	Tree []byte `json:"tree"` // base64 in JSON
	Jobs int    `json:"jobs,omitempty"`
	// Stage splits a push the caller signs (the daemon never holds a
	// user's key): PushPrepare uploads the blobs and returns the tree
	// object to sign without publishing it; PushCommit publishes a tree
	// so prepared and signed. "" does the whole push, unsigned.
	Stage string `json:"stage,omitempty"`
}

// Push stages (RemotePushParams.Stage).
const (
	PushPrepare = "prepare"
	PushCommit  = "commit"
)

// RemoteResult reports a transfer (see teamcache.Result); a pull also
// returns the tree object.
type RemoteResult struct {
	Remote       string `json:"remote"`
	Trees        int    `json:"trees"`
	Blobs        int64  `json:"blobs"`
	BlobsSent    int64  `json:"blobs_sent"`
	BytesSent    int64  `json:"bytes_sent"`
	BlobsFetched int64  `json:"blobs_fetched"`
	BytesFetched int64  `json:"bytes_fetched"`
	Reused       int64  `json:"reused"`
	Requests     int64  `json:"requests"`
	Tree         []byte `json:"tree,omitempty"`
	Store        string `json:"store"`
	// Unchanged (prepare) means Tree is the object the remote already
	// holds for the same content: sign it only if the key has not.
	Unchanged bool `json:"unchanged,omitempty"`
	// Signer is the signature the tree was accepted by (pull).
	Signer *trust.Signer `json:"signer,omitempty"`
}
