// Package service is the daemon's side of vrift: it serves the protocol's
// methods on the shared store with the same engine as direct mode, and adds
// what sharing needs: caller identity and scoping, ingest sessions as
// in-flight GC roots, pinned copies of users' manifests as GC roots, the
// private-file policy and the audit log.
package service
