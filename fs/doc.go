// Package fs owns the projections of a manifest back into a directory tree:
// the link farm (symlinks into the store, hardlinks, reflinks or copies),
// made incrementally and atomically, and later the read-only FUSE view.
package fs
