// Package manifest owns a project's tree record: an LMDB file
// (<project>/.vrift/manifest.lmdb plus its -lock file) mapping each path,
// relative to the project root and kept as raw bytes, to a directory, a
// regular file (content key, size, mode, mtime) or a symlink (target bytes),
// plus metadata (format version, root, ingested subtrees, totals).
//
// Keys sort bytewise, so a directory always precedes everything below it and
// a subtree is one contiguous key range: readers can stream a tree of any
// size in order without loading it into memory.
package manifest
