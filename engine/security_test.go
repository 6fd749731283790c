package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/cas"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSwapDoesNotFollowSwappedDir (L2): between the commit and the in-place
// swap, a directory of the project is moved out of the tree and replaced by
// a symlink to where it went. The swap must not follow it: before the fix
// the file outside the tree (same inode, so "unchanged") was replaced by a
// symlink.
func TestSwapDoesNotFollowSwappedDir(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "proj")
	outside := filepath.Join(base, "outside")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "node_modules/lib/index.js": "x"})
	os.Mkdir(outside, 0o755)
	d, err := OpenDirect(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	res, err := d.Ingest(context.Background(), IngestOptions{
		Dir:  filepath.Join(proj, "node_modules"),
		Warn: func(s string) { warnings = append(warnings, s) },
		Committed: func(string) error {
			lib := filepath.Join(proj, "node_modules", "lib")
			if err := os.Rename(lib, filepath.Join(outside, "lib")); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(outside, "lib"), lib)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Lstat(filepath.Join(outside, "lib", "index.js"))
	if err != nil || !info.Mode().IsRegular() {
		t.Fatalf("a file outside the tree was swapped through a symlinked directory: %v %v", info.Mode(), err)
	}
	if res.Projected != 0 || !strings.Contains(strings.Join(warnings, "\n"), "not projecting") {
		t.Errorf("projected %d, warnings %q; want 0 and a warning", res.Projected, warnings)
	}
}

// TestDirectSharedStoreKeepsPrivateOut (M3): a direct-mode store other
// users can reach takes only files they could read anyway.
func TestDirectSharedStoreKeepsPrivateOut(t *testing.T) {
	base, err := os.MkdirTemp("/tmp", "vrift-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	store := filepath.Join(base, "store")
	if err := os.Mkdir(store, 0o755); err != nil { // an old, open store
		t.Fatal(err)
	}
	proj := filepath.Join(base, "proj")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/a.js": "a", "lib/secret.env": "TOKEN=x"})
	os.Chmod(filepath.Join(proj, "lib/secret.env"), 0o600)
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Ingest(context.Background(), IngestOptions{Dir: filepath.Join(proj, "lib"), Tier: Tier2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || res.Private != 1 {
		t.Errorf("files %d, private %d; want 1 and 1 (secret.env kept out)", res.Files, res.Private)
	}
	// A new store is private, and then the file goes in.
	d2, err := OpenDirect(filepath.Join(base, "store2"))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(base, "store2")); info.Mode().Perm() != 0o700 {
		t.Errorf("new store mode %v, want 0700", info.Mode().Perm())
	}
	os.RemoveAll(filepath.Join(proj, ".vrift"))
	res, err = d2.Ingest(context.Background(), IngestOptions{Dir: filepath.Join(proj, "lib"), Tier: Tier2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 || res.Private != 0 {
		t.Errorf("private store: files %d, private %d; want 2 and 0", res.Files, res.Private)
	}
}

// TestDirectRefusesDaemonStore: direct mode on the daemon's store (the
// daemon keeps its GC roots elsewhere) must not gc it, which would see no
// roots and sweep every blob, nor ingest into it.
func TestDirectRefusesDaemonStore(t *testing.T) {
	root := filepath.Join(t.TempDir(), "the_source")
	daemon, err := cas.Open(root, cas.Options{DirMode: 0o711, Owner: cas.OwnerDaemon})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "content")
	os.WriteFile(f, []byte("a blob only the daemon's roots know"), 0o644)
	src, _ := os.Open(f)
	put, err := daemon.Put(context.Background(), src, false)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDirect(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.GC(context.Background(), GCOptions{Grace: 0}); !errors.Is(err, ErrDaemonStore) {
		t.Errorf("direct gc on a daemon store: %v, want ErrDaemonStore", err)
	}
	if !daemon.Has(put.Key) {
		t.Error("the blob was swept")
	}
	proj := filepath.Join(t.TempDir(), "proj")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/a.js": "a"})
	if _, err := d.Ingest(context.Background(), IngestOptions{Dir: filepath.Join(proj, "lib")}); !errors.Is(err, ErrDaemonStore) {
		t.Errorf("direct ingest into a daemon store: %v, want ErrDaemonStore", err)
	}
	if _, err := d.Verify(context.Background(), VerifyOptions{}); err != nil {
		t.Errorf("verify of a daemon store in direct mode: %v", err)
	}
}
