// Package cas owns the content-addressed blob store: its on-disk layout
// (blake3/ab/cd/<hash>_<size>.bin), atomic puts, opening blobs, integrity
// verification and the sweep primitive used by garbage collection.
//
// A blob is immutable once it has a name. Puts copy bytes into a temp file
// inside the store, hash exactly the bytes written, fsync, make the file
// read-only and only then give it its final name, so a crash can leave a
// stray temp file but never a blob whose name lies about its content.
//
// Batch.Adopt is the one exception to copying: direct mode's adopting
// ingest takes over a user's file's inode (hardlinks it into the store,
// read-only) instead of copying it, and only when nobody can change it any
// more: the caller holds a write lease, the file has one link and lies on
// the store's filesystem (see adopt.go). The daemon never adopts.
package cas
