package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/roots"
)

// oldRootName is how stores made before the one registry named a root:
// the first 16 bytes of SHA-256 of its manifest path, in hex. Spelled out
// here, not taken from roots.ID, so the test pins the old name down.
func oldRootName(mpath string) string {
	sum := sha256.Sum256([]byte(mpath))
	return hex.EncodeToString(sum[:16])
}

// TestDirectLegacyRoots: a direct store with the old roots layout
// (<store>/roots/<id> holding the manifest path), made by hand, keeps
// working: status counts its roots, gc keeps their blobs and drops the
// root whose manifest is gone, and the records end in the one layout.
func TestDirectLegacyRoots(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	store := filepath.Join(base, "store")
	p1, p2 := filepath.Join(base, "p1"), filepath.Join(base, "p2")
	writeFiles(t, p1, map[string]string{"package.json": "{}", "lib/a.js": "a", "lib/b.js": "b"})
	writeFiles(t, p2, map[string]string{"package.json": "{}", "lib/c.js": "c"})
	ingestDirect(t, store, filepath.Join(p1, "lib"), IngestOptions{Tier: Tier2})
	ingestDirect(t, store, filepath.Join(p2, "lib"), IngestOptions{Tier: Tier2})
	// A blob no root references, to show the sweep runs.
	d0, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(base, "orphan")
	os.WriteFile(f, []byte("referenced by nobody"), 0o644)
	src, _ := os.Open(f)
	if _, err := d0.Store.Put(ctx, src, false); err != nil {
		t.Fatal(err)
	}
	src.Close()

	// Rewrite the registry in the old layout; p2's project is then
	// deleted, so its root is gone.
	rdir := filepath.Join(store, "roots")
	if err := os.RemoveAll(rdir); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(rdir, 0o700)
	m1, m2 := manifest.PathFor(p1), manifest.PathFor(p2)
	for _, mp := range []string{m1, m2} {
		if err := os.WriteFile(filepath.Join(rdir, oldRootName(mp)), []byte(mp), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.RemoveAll(p2)

	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Status(ctx, StatusOptions{})
	if err != nil || st.Roots != 2 || st.Blobs != 4 {
		t.Fatalf("status of a store with old roots: %+v, %v; want 2 roots, 4 blobs", st, err)
	}
	res, err := d.GC(ctx, GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	// a, b (p1's, kept); c (p2's, gone with its root) and the orphan swept.
	if res.Roots != 1 || res.Kept != 2 || res.Removed != 2 || len(res.DroppedRoots) != 1 || res.DroppedRoots[0] != m2 {
		t.Fatalf("gc of a store with old roots: %+v", res)
	}
	uid := strconv.Itoa(os.Getuid())
	if _, err := os.Stat(filepath.Join(rdir, uid, oldRootName(m1)+".json")); err != nil {
		t.Errorf("p1's root not in the one layout: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(rdir, "*"))
	if len(left) != 1 || left[0] != filepath.Join(rdir, uid) {
		t.Errorf("left in %s: %v", rdir, left)
	}
	if st, _ := d.Status(ctx, StatusOptions{}); st.Roots != 1 {
		t.Errorf("roots after gc: %d", st.Roots)
	}
	// Verify finds p1's root and all its blobs.
	vr, err := d.Verify(ctx, VerifyOptions{})
	if err != nil || vr.Roots != 1 || len(vr.Missing) != 0 {
		t.Errorf("verify: %+v, %v", vr, err)
	}
}

// TestDirectGCRefusesUnreadableRecord: a root record that cannot be read
// may name any manifest, so gc deletes nothing; status still answers.
func TestDirectGCRefusesUnreadableRecord(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	store := filepath.Join(base, "store")
	p := filepath.Join(base, "p")
	writeFiles(t, p, map[string]string{"package.json": "{}", "lib/a.js": "a"})
	ingestDirect(t, store, filepath.Join(p, "lib"), IngestOptions{Tier: Tier2})
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	// Another project's record, torn.
	bad := filepath.Join(store, "roots", strconv.Itoa(os.Getuid()), roots.ID("/elsewhere/.vrift/manifest.lmdb")+".json")
	if err := os.WriteFile(bad, []byte(`{"uid":`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Its project is gone too: without the record gc would sweep a.js.
	os.RemoveAll(p)
	if _, err := d.GC(ctx, GCOptions{Grace: 0}); !errors.Is(err, roots.ErrUnreadable) {
		t.Fatalf("gc with an unreadable root record: %v", err)
	}
	if st, err := d.Status(ctx, StatusOptions{}); err != nil || st.Blobs != 1 || st.Roots != 1 {
		t.Errorf("status with an unreadable root record: %+v, %v", st, err)
	}
	os.Remove(bad)
	if res, err := d.GC(ctx, GCOptions{Grace: 0}); err != nil || res.Removed != 1 {
		t.Errorf("gc once the record is gone: %+v, %v", res, err)
	}
}
