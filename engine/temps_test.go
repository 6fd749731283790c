package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// TestKilledLinkTempNotIngested: the temp files a killed `vrift link` (or
// an interrupted swap) leaves beside their destination are vrift's, not the
// project's: the next ingest records none of them, and keeps the files
// they were to replace.
func TestKilledLinkTempNotIngested(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a/index.js": "a", "nm/b/data.txt": "b"})
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	// What a link killed between making its temp and renaming it leaves:
	// a copy (method copy or reflink) and a symlink, under the names
	// tree.Replace gives them; and an adopting ingest's copy.
	copyTemp := filepath.Join(proj, "nm/a", tree.TempName(tree.LinkTempPrefix, "index.js"))
	linkTemp := filepath.Join(proj, "nm/b", tree.TempName(tree.LinkTempPrefix, "data.txt"))
	swapTemp := filepath.Join(proj, "nm/b", tree.TempName(tree.SwapTempPrefix, "data.txt"))
	if err := os.WriteFile(copyTemp, []byte("half a cop"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(store, "blake3/xx"), linkTemp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(swapTemp, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	if res.Files != 2 {
		t.Errorf("re-ingest recorded %d files, want the 2 of the project", res.Files)
	}
	for _, p := range []string{copyTemp, linkTemp, swapTemp} {
		rel, _ := filepath.Rel(proj, p)
		if e := entryOf(t, proj, filepath.ToSlash(rel)); e.Kind != 0 {
			t.Errorf("%s (a killed link's temp) recorded as %v", rel, e.Kind)
		}
	}
	for _, p := range []string{"nm/a/index.js", "nm/b/data.txt"} {
		if e := entryOf(t, proj, p); e.Kind != manifest.File {
			t.Errorf("%s: %+v", p, e)
		}
	}
}
