package cas

import "testing"

// For the external tests (space_root_test.go).
const TmpDir = tmpDir

// CountFiles counts the files below dir.
func CountFiles(t *testing.T, dir string) int { return countFiles(t, dir) }
