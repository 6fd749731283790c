package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vrift/vrift/manifest"
)

// TestReingestTrustedDirs: once a directory's identity is recorded, an
// unchanged re-ingest takes its symlinks from the manifest without reading
// them; any change to the directory's entries (a projection replaced by
// another symlink, a new file) is still seen, as is a file changed in place.
func TestReingestTrustedDirs(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a/index.js": "a", "nm/b/index.js": "b", "nm/c/data.txt": "c"})
	os.Symlink("a/index.js", filepath.Join(proj, "nm/link"))
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier1})
	// Directory ctimes are recorded once older than the racy window.
	time.Sleep(racyWindow + 100*time.Millisecond)
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier1})
	if e := entryOf(t, proj, "nm/a"); e.CTime == 0 || e.Ino == 0 {
		t.Fatalf("directory identity not recorded: %+v", e)
	}
	res := ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier1})
	if res.Files != 3 || res.Reused != 3 || res.Symlinks != 1 {
		t.Fatalf("unchanged re-ingest: %+v", res)
	}
	if e := entryOf(t, proj, "nm/link"); e.Kind != manifest.Symlink || string(e.Target) != "a/index.js" {
		t.Errorf("the tree's own symlink: %+v", e)
	}

	// A projection replaced by the user's own symlink.
	os.Remove(filepath.Join(proj, "nm/a/index.js"))
	os.Symlink("/elsewhere", filepath.Join(proj, "nm/a/index.js"))
	// A projection replaced by a regular file, and a file added.
	os.Remove(filepath.Join(proj, "nm/b/index.js"))
	os.WriteFile(filepath.Join(proj, "nm/b/index.js"), []byte("b2"), 0o644)
	os.WriteFile(filepath.Join(proj, "nm/c/new.txt"), []byte("new"), 0o644)
	res = ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	if e := entryOf(t, proj, "nm/a/index.js"); e.Kind != manifest.Symlink || string(e.Target) != "/elsewhere" {
		t.Errorf("replaced projection recorded as %v %q", e.Kind, e.Target)
	}
	if e := entryOf(t, proj, "nm/b/index.js"); e.Kind != manifest.File || e.Size != 2 {
		t.Errorf("new file content not recorded: %+v", e)
	}
	if e := entryOf(t, proj, "nm/c/new.txt"); e.Kind != manifest.File {
		t.Errorf("added file not recorded: %+v", e)
	}

	// A different store: nothing is taken on trust.
	time.Sleep(racyWindow + 100*time.Millisecond)
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	ingestDirect(t, filepath.Join(base, "store2"), filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	if e := entryOf(t, proj, "nm/c/data.txt"); e.Kind != manifest.Symlink {
		t.Errorf("a projection into the old store was taken on trust for the new one: %+v", e)
	}
}
