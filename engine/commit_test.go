package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vrift/vrift/manifest"
)

// manifestState is a manifest's last transaction id and its totals.
func manifestState(t *testing.T, proj string) (int64, manifest.Totals) {
	t.Helper()
	m, err := manifest.Open(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v, err := m.Version()
	if err != nil {
		t.Fatal(err)
	}
	var meta manifest.Meta
	if err := m.View(func(r *manifest.Reader) error {
		meta, err = r.Meta()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v, meta.Totals
}

// TestCommitEvery: an ingest that commits in parts records what one
// commit would (the next plain ingest finds every file unchanged), prunes
// what is gone in its last part, and really commits more than once.
func TestCommitEvery(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	files := map[string]string{"package.json": "{}"}
	for d := range 4 {
		for f := range 10 {
			files[fmt.Sprintf("nm/d%d/f%d.js", d, f)] = fmt.Sprintf("file %d/%d", d, f)
		}
	}
	writeFiles(t, proj, files)
	ingestDirect(t, store, proj, IngestOptions{Tier: Tier2, Mode: Solid, CommitEvery: 1})
	v0, tot := manifestState(t, proj)
	if tot.Files != 41 || tot.Dirs < 5 {
		t.Fatalf("totals after a parted ingest: %+v", tot)
	}
	if e := entryOf(t, proj, "nm/d3/f9.js"); e.Kind != manifest.File || e.Ino == 0 || e.Size != int64(len("file 3/9")) {
		t.Fatalf("entry: %+v", e)
	}
	res := ingestDirect(t, store, proj, IngestOptions{Tier: Tier2, Mode: Solid})
	if res.Files != 41 || res.Reused != 41 || res.ReadFiles != 0 {
		t.Fatalf("plain re-ingest after a parted one: %+v", res)
	}
	if v, _ := manifestState(t, proj); v != v0 {
		t.Fatalf("unchanged re-ingest committed (txn %d -> %d)", v0, v)
	}

	// Removals are pruned in the last part; additions land in parts.
	os.RemoveAll(filepath.Join(proj, "nm/d1"))
	os.Remove(filepath.Join(proj, "nm/d2/f0.js"))
	writeFiles(t, proj, map[string]string{"nm/d4/a.js": "a", "nm/d4/b.js": "b", "nm/d4/c.js": "c", "nm/d4/d.js": "d"})
	ingestDirect(t, store, proj, IngestOptions{Tier: Tier2, Mode: Solid, CommitEvery: 2})
	v1, tot := manifestState(t, proj)
	if tot.Files != 41-11+4 {
		t.Fatalf("totals after removals: %+v", tot)
	}
	if v1-v0 < 3 {
		t.Fatalf("5 new entries every 2 committed in %d transaction(s)", v1-v0)
	}
	if e := entryOf(t, proj, "nm/d1/f0.js"); e.Kind != 0 {
		t.Fatalf("removed file still recorded: %+v", e)
	}
	if e := entryOf(t, proj, "nm/d1"); e.Kind != 0 {
		t.Fatalf("removed directory still recorded: %+v", e)
	}
	res = ingestDirect(t, store, proj, IngestOptions{Tier: Tier2, Mode: Solid})
	if res.Files != 34 || res.Reused != 34 || res.ReadFiles != 0 {
		t.Fatalf("plain re-ingest: %+v", res)
	}
}
