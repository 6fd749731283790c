package engine

import iofs "io/fs"

// dirent is one entry of a directory listing: its name and its type bits
// (0 for a regular file, and for a type the filesystem did not give: the
// walk stats every entry it does not take from the manifest anyway).
type dirent struct {
	name string
	typ  iofs.FileMode
	// unknown: the filesystem gave no type (DT_UNKNOWN); typ is 0.
	unknown bool
}
