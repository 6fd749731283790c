// Package engine is the one implementation of vrift's operations (ingest,
// link, status, gc, verify) over a blob store and project manifests. The CLI
// in direct mode and the daemon both call it; they differ only in where blob
// bytes go (a BlobWriter) and who holds the store lock.
package engine
