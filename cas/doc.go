// Package cas owns the content-addressed blob store: its on-disk layout
// (blake3/ab/cd/<hash>_<size>.bin), atomic puts, opening blobs, integrity
// verification and the sweep primitive used by garbage collection.
//
// A blob is immutable once it has a name. Puts copy bytes into a temp file
// inside the store, hash exactly the bytes written, fsync, make the file
// read-only and only then give it its final name, so a crash can leave a
// stray temp file but never a blob whose name lies about its content. The
// store never takes ownership of a caller's inode (no rename or hardlink of
// user files into the store): a user who kept a link could still change it.
package cas
