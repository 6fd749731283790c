//go:build !linux

package cas

// renameNoReplace renames oldpath to newpath, failing with EEXIST instead of
// replacing an existing newpath.
func renameNoReplace(oldpath, newpath string) error { return linkThenRemove(oldpath, newpath) }
