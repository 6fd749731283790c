package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// TestDirIdentityOnlyWithSymlinks: a directory's identity vouches for its
// symlinks alone, so one without any records none (as a watcher's live
// refresh records it), and one with a symlink does.
func TestDirIdentityOnlyWithSymlinks(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/plain/a.js": "a", "nm/links/b.js": "b"})
	os.Symlink("b.js", filepath.Join(proj, "nm/links/main.js"))
	time.Sleep(racyWindow + 100*time.Millisecond)
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
	if e := entryOf(t, proj, "nm/plain"); e.Kind != manifest.Dir || e.Ino != 0 || e.CTime != 0 {
		t.Errorf("a directory without symlinks recorded an identity: %+v", e)
	}
	if e := entryOf(t, proj, "nm/links"); e.Ino == 0 || e.CTime == 0 {
		t.Errorf("a directory with a symlink recorded no identity: %+v", e)
	}
}

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
	ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier2})
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

// TestReingestEpoch: while the store has removed nothing since the
// manifest was recorded, an unchanged re-ingest trusts that each reused
// file's blob is there (no lstat); a removal under the store's exclusive
// lock (gc), a quarantine, or a verify that finds a blob deleted behind
// vrift's back replaces the store's epoch, and the next re-ingest checks
// every blob and stores the missing ones again.
func TestReingestEpoch(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/a": "a", "lib/b": "b"})
	lib := filepath.Join(proj, "lib")
	ingestDirect(t, store, lib, IngestOptions{Tier: Tier2})
	blob := func(name string) string {
		t.Helper()
		return cas.BlobPath(store, entryOf(t, proj, "lib/"+name).Key())
	}
	epoch := cas.ReadEpoch(store)
	if epoch == "" {
		t.Fatal("no epoch")
	}
	if m := metaOf(t, proj); m.StoreEpoch != epoch {
		t.Fatalf("manifest records epoch %q, the store's is %q", m.StoreEpoch, epoch)
	}
	// Deleted behind vrift's back: trusted (not noticed) until verify.
	if err := os.Remove(blob("a")); err != nil {
		t.Fatal(err)
	}
	if res := ingestDirect(t, store, lib, IngestOptions{Tier: Tier2}); res.NewBlobs != 0 {
		t.Fatalf("re-ingest with the epoch unchanged re-stored %d blobs (it should not lstat them)", res.NewBlobs)
	}
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vr, err := d.Verify(ctx, VerifyOptions{})
	if err != nil || len(vr.Missing) != 1 {
		t.Fatalf("verify: %+v, %v; want one missing", vr, err)
	}
	if cas.ReadEpoch(store) == epoch {
		t.Fatal("verify found a missing blob and left the epoch")
	}
	if res := ingestDirect(t, store, lib, IngestOptions{Tier: Tier2}); res.NewBlobs != 1 {
		t.Fatalf("re-ingest after verify: %d new blobs, want the missing one", res.NewBlobs)
	}
	if _, err := os.Stat(blob("a")); err != nil {
		t.Fatal(err)
	}
	// A removal under the exclusive lock (what gc and the sweeps do).
	epoch = cas.ReadEpoch(store)
	lock, err := d.Store.LockExclusive(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cas.ReadEpoch(store) == epoch {
		t.Fatal("the exclusive lock left the epoch")
	}
	if err := d.Store.Remove(entryOf(t, proj, "lib/b").Key()); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	if res := ingestDirect(t, store, lib, IngestOptions{Tier: Tier2}); res.NewBlobs != 1 {
		t.Fatalf("re-ingest after a removal: %d new blobs, want 1", res.NewBlobs)
	}
	// Quarantine replaces it too.
	epoch = cas.ReadEpoch(store)
	if _, err := d.Store.Quarantine(entryOf(t, proj, "lib/a").Key()); err != nil {
		t.Fatal(err)
	}
	if cas.ReadEpoch(store) == epoch {
		t.Fatal("quarantine left the epoch")
	}
	if res := ingestDirect(t, store, lib, IngestOptions{Tier: Tier2}); res.NewBlobs != 1 {
		t.Fatalf("re-ingest after a quarantine: %d new blobs, want 1", res.NewBlobs)
	}
}

func metaOf(t *testing.T, proj string) manifest.Meta {
	t.Helper()
	ps, err := ReadProjectStatus(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Open(ps.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var meta manifest.Meta
	if err := m.View(func(r *manifest.Reader) error { var err error; meta, err = r.Meta(); return err }); err != nil {
		t.Fatal(err)
	}
	return meta
}

// TestVouchAfterSwap: a tier1 ingest records the identity of every
// directory its swap changed once the listing matches the manifest, so the
// first re-ingest, even at once, takes the projections on trust like any
// later one; a directory whose symlink points elsewhere, or whose ctime
// the filesystem's clock has not yet passed, is not vouched for.
func TestVouchAfterSwap(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a/index.js": "a", "nm/b/index.js": "b", "nm/b/x.js": "x"})
	os.Symlink("index.js", filepath.Join(proj, "nm/b/main.js"))
	res := ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier1})
	if res.Projected != 3 {
		t.Fatalf("ingest: %+v", res)
	}
	for _, dir := range []string{"nm/a", "nm/b"} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(proj, dir), &st); err != nil {
			t.Fatal(err)
		}
		e := entryOf(t, proj, dir)
		if e.Ino != st.Ino || e.CTime != unix.TimespecToNsec(st.Ctim) {
			t.Errorf("%s after the swap: recorded ino %d ctime %d, is %d %d", dir, e.Ino, e.CTime, st.Ino, unix.TimespecToNsec(st.Ctim))
		}
	}
	// At once, inside the racy window: the vouched record still vouches,
	// and is carried into the re-ingest's own records.
	res = ingestDirect(t, store, filepath.Join(proj, "nm"), IngestOptions{Tier: Tier1})
	if res.Reused != 3 || res.Symlinks != 1 || res.NewBlobs != 0 {
		t.Fatalf("first re-ingest: %+v", res)
	}
	if e := entryOf(t, proj, "nm/b"); e.CTime == 0 {
		t.Errorf("the re-ingest dropped a vouched directory's identity: %+v", e)
	}

	// vouchDir itself, against the manifest as committed.
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tree.Open(proj)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	m, err := manifest.Open(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer d.Close()
	in := &ingester{t: tr, m: m, opts: IngestOptions{StoreRoot: d.Store.Root()}}
	// A projection replaced by another symlink.
	os.Remove(filepath.Join(proj, "nm/a/index.js"))
	os.Symlink("/elsewhere", filepath.Join(proj, "nm/a/index.js"))
	time.Sleep(20 * time.Millisecond)
	now, dev, err := in.clockProbe()
	if err != nil {
		t.Fatal(err)
	}
	looked := 0
	m.View(func(r *manifest.Reader) error {
		if _, ok, tooNew := in.vouchDir(r, "nm/a", now, dev, &looked); ok || tooNew {
			t.Errorf("a directory whose projection points elsewhere was vouched for (ok %v, too new %v)", ok, tooNew)
		}
		if v, ok, _ := in.vouchDir(r, "nm/b", now, dev, &looked); !ok || v.ino == 0 {
			t.Errorf("an unchanged directory was not vouched for: %+v %v", v, ok)
		}
		var st unix.Stat_t
		unix.Stat(filepath.Join(proj, "nm/b"), &st)
		if _, ok, tooNew := in.vouchDir(r, "nm/b", unix.TimespecToNsec(st.Ctim), dev, &looked); ok || !tooNew {
			t.Errorf("a ctime the clock has not passed was vouched for (ok %v, too new %v)", ok, tooNew)
		}
		return nil
	})
	if looked == 0 {
		t.Error("vouchDir counted no lookups")
	}
}
