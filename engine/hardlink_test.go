package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
)

// TestIngestHardlink: tier1 with --method hardlink leaves every path as its
// blob's own inode (adopted files untouched, duplicates and copies swapped
// for a hardlink of the blob), warns nothing about Node, and a re-ingest
// reads nothing, even for paths whose inode is another file's blob.
func TestIngestHardlink(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{
		"package.json":            "{}",
		"node_modules/x/index.js": "same",
		"node_modules/y/index.js": "same",
		"node_modules/z/run.sh":   "#!/bin/sh\n",
		"node_modules/w.txt":      "held",
	})
	os.Chmod(filepath.Join(proj, "node_modules/z/run.sh"), 0o755)
	outside := filepath.Join(base, "outside.txt")
	if err := os.Link(filepath.Join(proj, "node_modules/w.txt"), outside); err != nil {
		t.Fatal(err)
	}
	nm := filepath.Join(proj, "node_modules")
	var warns []string
	warn := func(m string) { warns = append(warns, m) }
	res := ingestDirect(t, store, nm, IngestOptions{Method: vfs.Hardlink, Warn: warn})
	// x or y adopted (the other has the same content), run.sh adopted,
	// w.txt (a second link) copied.
	if res.Files != 4 || res.Adopted != 2 || res.Copied != 1 || res.Projected != 4 {
		t.Fatalf("files %d adopted %d copied %d projected %d; want 4 2 1 4", res.Files, res.Adopted, res.Copied, res.Projected)
	}
	for _, w := range warns {
		if strings.Contains(w, "Node") {
			t.Errorf("warned about Node on a hardlink projection: %s", w)
		}
	}
	s, err := cas.Open(store, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"x/index.js": "same", "y/index.js": "same", "z/run.sh": "#!/bin/sh\n", "w.txt": "held"}
	for p, content := range want {
		key := "node_modules/" + p
		e := entryOf(t, proj, key)
		info, err := os.Lstat(filepath.Join(proj, key))
		if err != nil {
			t.Fatal(err)
		}
		blob, err := os.Stat(s.Path(e.Key()))
		if err != nil {
			t.Fatalf("%s: blob: %v", p, err)
		}
		if !info.Mode().IsRegular() || !os.SameFile(info, blob) {
			t.Errorf("%s: not a hardlink of its blob (mode %v)", p, info.Mode())
		}
		if info.Mode().Perm() != os.FileMode(e.Key().Mode()) {
			t.Errorf("%s: mode %v, want the blob's %o", p, info.Mode().Perm(), e.Key().Mode())
		}
		if got, _ := os.ReadFile(filepath.Join(proj, key)); string(got) != content {
			t.Errorf("%s: content %q, want %q", p, got, content)
		}
	}
	if info, _ := os.Stat(outside); info.Mode().Perm() != 0o644 {
		t.Errorf("the outside link's mode changed to %v", info.Mode().Perm())
	}
	if got, _ := os.ReadFile(outside); string(got) != "held" {
		t.Errorf("the outside link's content is %q", got)
	}

	// Unchanged: nothing read, nothing new.
	res = ingestDirect(t, store, nm, IngestOptions{Method: vfs.Hardlink})
	if res.Reused != 4 || res.NewBlobs != 0 {
		t.Errorf("re-ingest: reused %d, new %d; want 4 reused, 0 new", res.Reused, res.NewBlobs)
	}
	// Replaced by the user (a new file renamed over it): stored again and
	// projected; the others still read nothing.
	tmp := filepath.Join(proj, "node_modules/y/.index.js.new")
	if err := os.WriteFile(tmp, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(proj, "node_modules/y/index.js")); err != nil {
		t.Fatal(err)
	}
	warns = nil
	res = ingestDirect(t, store, nm, IngestOptions{Method: vfs.Hardlink, Warn: warn})
	if res.Reused != 3 || res.NewBlobs != 1 || res.Adopted != 1 || res.Projected != 1 {
		t.Errorf("after a change: reused %d, new %d, adopted %d, projected %d; want 3, 1, 1, 1", res.Reused, res.NewBlobs, res.Adopted, res.Projected)
	}
	if len(warns) != 0 {
		t.Errorf("warnings about unchanged projections: %q", warns)
	}
	// A later default (symlink) ingest projects only what is new, and
	// leaves the hardlink projections as they are.
	writeFiles(t, proj, map[string]string{"node_modules/new.js": "new"})
	warns = nil
	res = ingestDirect(t, store, nm, IngestOptions{Warn: warn})
	if res.Reused != 4 || res.Projected != 1 {
		t.Errorf("symlink ingest after hardlink: reused %d, projected %d; want 4, 1", res.Reused, res.Projected)
	}
	for _, w := range warns {
		if strings.Contains(w, "not projecting") {
			t.Errorf("symlink ingest after hardlink: %s", w)
		}
	}
	if info, _ := os.Lstat(filepath.Join(proj, "node_modules/new.js")); info == nil || info.Mode()&os.ModeSymlink == 0 {
		t.Error("the new file is not a symlink projection")
	}
	if info, _ := os.Lstat(filepath.Join(proj, "node_modules/x/index.js")); info == nil || !info.Mode().IsRegular() {
		t.Error("a hardlink projection was replaced")
	}
	e := entryOf(t, proj, "node_modules/y/index.js")
	if got, _ := os.ReadFile(s.Path(e.Key())); string(got) != "changed" {
		t.Errorf("changed file's blob holds %q", got)
	}
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := d.Verify(context.Background(), VerifyOptions{}); err != nil || !v.OK() {
		t.Errorf("verify: %v %+v", err, v)
	}
}

// TestIngestHardlinkRefusals: --method hardlink needs tier1 solid ingest
// and the store on the project's filesystem; a refused ingest changes
// nothing.
func TestIngestHardlinkRefusals(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/a.js": "a"})
	lib := filepath.Join(proj, "lib")
	d, err := OpenDirect(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []IngestOptions{
		{Dir: lib, Method: vfs.Hardlink, Tier: Tier2},
		{Dir: lib, Method: vfs.Hardlink, Mode: Phantom},
		{Dir: lib, Method: vfs.Copy},
	} {
		if _, err := d.Ingest(context.Background(), opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
	}
	if shm, err := os.MkdirTemp("/dev/shm", "vrift-store-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		other, err := OpenDirect(filepath.Join(shm, "store"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = other.Ingest(context.Background(), IngestOptions{Dir: lib, Method: vfs.Hardlink})
		if err == nil || !strings.Contains(err.Error(), "another filesystem") {
			t.Errorf("store on tmpfs: %v, want a refusal naming the other filesystem", err)
		}
	}
	info, err := os.Lstat(filepath.Join(lib, "a.js"))
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o644 {
		t.Errorf("a refused ingest changed the file: %v %v", info.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(proj, ".vrift/manifest.lmdb")); err == nil {
		t.Error("a refused ingest left a manifest")
	}
}
