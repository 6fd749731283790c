package teamcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vrift/vrift/teamcache"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/internal/s3test"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
)

const bucket = "team"

// env is one test's S3 server and remote.
type env struct {
	srv *s3test.Server
	b   *remote.S3
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := s3test.Start(t, bucket)
	srv.SetEnv(t)
	b, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket + "/cache", Endpoint: srv.Endpoint(), Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, b: b}
}

// project writes a small tree with every kind of entry and ingests it
// (tier2: the files stay) into a fresh store, returning the store and the
// project root.
func project(t *testing.T, files map[string]string) (*engine.Direct, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "app")
	for p, content := range files {
		abs := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(filepath.Base(p), "x-") {
			mode = 0o755
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), abs); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(abs, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "package.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := engine.OpenDirect(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Ingest(context.Background(), engine.IngestOptions{Dir: filepath.Join(root, "node_modules"), Tier: engine.Tier2, Mode: engine.Solid}); err != nil {
		t.Fatal(err)
	}
	return d, root
}

func sampleFiles(n int) map[string]string {
	files := map[string]string{
		"node_modules/a/index.js":        "module.exports = 1\n",
		"node_modules/a/x-cli":           "#!/bin/sh\necho hi\n",
		"node_modules/a/same.js":         "module.exports = 1\n",
		"node_modules/a/empty":           "",
		"node_modules/.bin/cli":          "->../a/x-cli",
		"node_modules/b/\xff\xfeodd.txt": "non-UTF-8 name\n",
		"node_modules/b/big.bin":         strings.Repeat("0123456789abcdef", 200000),
	}
	for i := range n {
		files[fmt.Sprintf("node_modules/gen/%03d/f%d.js", i%50, i)] = fmt.Sprintf("// file %d\n", i)
	}
	return files
}

func newStore(t *testing.T) *engine.Direct {
	t.Helper()
	d, err := engine.OpenDirect(filepath.Join(t.TempDir(), "store2"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mpathOf(root string) string { return manifest.PathFor(root) }

// remoteKeys lists the objects under prefix with their sizes.
func remoteKeys(t *testing.T, b remote.Backend, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := b.List(context.Background(), prefix, func(o remote.ObjectInfo) error {
		out[o.Key] = o.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTreesComplete fails if any tree in the remote names a blob the
// remote has nowhere (in a committed pack, a zstd object or a version 1
// object): the commit-record invariant.
func checkTreesComplete(t *testing.T, b remote.Backend) int {
	t.Helper()
	ctx := context.Background()
	inv, err := teamcache.LoadInventory(ctx, b, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	trees, err := teamcache.List(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range trees {
		tr, _, err := teamcache.FetchTree(ctx, b, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range tr.Keys() {
			if _, ok := inv.Where(k); !ok {
				t.Fatalf("tree %s references %s, which the remote lacks", ti.Name, k)
			}
		}
	}
	return len(trees)
}

// treeKeys returns the distinct blobs of the project's manifest.
func treeKeys(t *testing.T, root string) []cas.Key {
	t.Helper()
	_, keys, _, err := teamcache.EncodeManifest(mpathOf(root))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestPushPullRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(40))
	res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-1", teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := treeKeys(t, root)
	if res.Trees != 1 || res.BlobsSent != int64(len(keys)) || res.Reused != 0 {
		t.Fatalf("first push: %+v (want %d blobs sent)", res, len(keys))
	}
	// Small blobs went into packs, the big one into a zstd object, and
	// nothing into version 1's per-blob objects; the tree says where each
	// one is, as the pack indexes do.
	if n := len(remoteKeys(t, e.b, teamcache.BlobPrefix)); n != 0 {
		t.Fatalf("%d version 1 blob objects written", n)
	}
	packs := remoteKeys(t, e.b, teamcache.PackPrefix)
	if len(packs) != 2 {
		t.Fatalf("objects under packs/: %v, want one pack and its index", packs)
	}
	inv, err := teamcache.LoadInventory(ctx, e.b, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := teamcache.FetchTree(ctx, e.b, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	for i, en := range tr.Entries {
		if en.Kind != manifest.File {
			continue
		}
		k := en.Key()
		w, ok := inv.Where(k)
		if !ok || w != tr.Where[i] || w.Zstd != (k.Size > teamcache.LargeBlob) || w.Zstd == (w.Pack != "") {
			t.Fatalf("%s: tree says %+v, indexes %+v %v", tr.Paths[i], tr.Where[i], w, ok)
		}
	}

	// The same push again sends nothing, in one request (the tree's GET).
	reqs := e.b.Stats().Requests()
	again, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-1", teamcache.Options{})
	if err != nil || again.BlobsSent != 0 || again.Trees != 0 || again.Reused != int64(len(keys)) {
		t.Fatalf("unchanged push: %+v, %v", again, err)
	}
	if n := e.b.Stats().Requests() - reqs; n != 1 {
		t.Fatalf("unchanged push: %d requests, want 1", n)
	}
	// Under another name, only the tree goes up.
	other, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-copy", teamcache.Options{})
	if err != nil || other.BlobsSent != 0 || other.Trees != 1 {
		t.Fatalf("push under a new name: %+v, %v", other, err)
	}

	// Pull into an empty store and an empty directory, then copy out.
	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "restored")
	reqs = e.b.Stats().Requests()
	pres, err := teamcache.Pull(ctx, d2.Store, e.b, "app-1", dest, d2.AddRoot, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pres.BlobsFetched != int64(len(keys)) || pres.Reused != 0 {
		t.Fatalf("cold pull: %+v", pres)
	}
	// The tree, one range of the pack (its frames are neighbours) and the
	// big blob's object.
	if n := e.b.Stats().Requests() - reqs; n != 3 {
		t.Fatalf("cold pull: %d requests, want 3", n)
	}
	if _, err := engine.Link(ctx, d2, engine.LinkOptions{ManifestPath: pres.ManifestPath, Method: vfs.Copy}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, filepath.Join(root, "node_modules"), filepath.Join(dest, "node_modules"))
	roots, _ := d2.RootManifests()
	if len(roots) != 1 || roots[0] != pres.ManifestPath {
		t.Fatalf("pulled manifest not a gc root: %v", roots)
	}
	// A second pull fetches nothing.
	p2, err := teamcache.Pull(ctx, d2.Store, e.b, "app-1", dest, d2.AddRoot, teamcache.Options{})
	if err != nil || p2.BlobsFetched != 0 || p2.Reused != int64(len(keys)) {
		t.Fatalf("second pull: %+v, %v", p2, err)
	}
	if _, err := teamcache.Pull(ctx, d2.Store, e.b, "nope", dest, nil, teamcache.Options{}); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("pull of a missing tree: %v", err)
	}
}

// compareTrees checks two trees have the same entries, kinds, modes,
// contents, symlink targets and file mtimes.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	desc := func(root string) map[string]string {
		out := map[string]string{}
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			info, _ := os.Lstat(p)
			s := info.Mode().String()
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				tg, _ := os.Readlink(p)
				s += " -> " + tg
			case info.Mode().IsRegular():
				b, _ := os.ReadFile(p)
				h := cas.NewHasher()
				h.Write(b)
				s += fmt.Sprintf(" %x %d", h.Sum(nil), len(b))
				s += " " + info.ModTime().UTC().Format(time.RFC3339Nano)
			}
			out[rel] = s
			return nil
		})
		return out
	}
	w, g := desc(want), desc(got)
	if len(w) != len(g) {
		t.Errorf("%d entries, want %d", len(g), len(w))
	}
	for p, s := range w {
		if g[p] != s {
			t.Errorf("%q: got %q, want %q", p, g[p], s)
		}
	}
}

// TestKillServerMidPush kills the S3 server while a push is uploading
// packs, restarts it and pushes again: the retry completes, sends only
// what is not in a committed pack, and no tree ever names a missing blob.
func TestKillServerMidPush(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(3000))
	packDir := e.srv.ObjectPath(bucket, "cache/packs")
	// Small packs, so there are many to cut the push between.
	small := teamcache.Options{Jobs: 4, PackSize: 4 << 10}
	done := make(chan error, 1)
	go func() {
		_, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "big", small)
		done <- err
	}()
	// Kill once some, not all, packs are up.
	deadline := time.Now().Add(60 * time.Second)
	for countFiles(packDir) < 20 {
		if time.Now().After(deadline) {
			t.Fatal("push made no progress")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.srv.Kill()
	err := <-done
	if err == nil {
		t.Fatal("push succeeded although the server was killed mid-push")
	}
	t.Logf("push with the server killed: %v", err)
	if _, serr := os.Stat(e.srv.ObjectPath(bucket, "cache/trees/big")); !errors.Is(serr, fs.ErrNotExist) {
		t.Fatalf("a tree object exists after a failed push: %v", serr)
	}
	e.srv.Start()
	if n := checkTreesComplete(t, e.b); n != 0 {
		t.Fatalf("%d trees after a failed push", n)
	}
	inv, err := teamcache.LoadInventory(ctx, e.b, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	committed := 0
	for _, ix := range inv.Packs {
		committed += len(ix.Entries)
	}
	res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "big", small)
	if err != nil {
		t.Fatal(err)
	}
	if committed == 0 || res.Reused < int64(committed) || res.BlobsSent+res.Reused != res.Blobs || res.Trees != 1 {
		t.Fatalf("resumed push: %+v (%d blobs were in committed packs before)", res, committed)
	}
	t.Logf("resumed push: %d blobs were up, %d sent now", res.Reused, res.BlobsSent)
	if n := checkTreesComplete(t, e.b); n != 1 {
		t.Fatalf("%d trees, want 1", n)
	}
	pullAndCompare(t, e.b, "big", root, teamcache.Options{})
}

// pullAndCompare pulls name into a fresh store and directory, copies it
// out and compares it with the project at root.
func pullAndCompare(t *testing.T, b remote.Backend, name, root string, opts teamcache.Options) *teamcache.Result {
	t.Helper()
	ctx := context.Background()
	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "r")
	pres, err := teamcache.Pull(ctx, d2.Store, b, name, dest, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Link(ctx, d2, engine.LinkOptions{ManifestPath: pres.ManifestPath, Method: vfs.Copy}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, filepath.Join(root, "node_modules"), filepath.Join(dest, "node_modules"))
	return pres
}

// TestKillServerMidPull kills the S3 server while a pull is reading
// ranges, restarts it and pulls again into the same store: the rerun
// fetches only what the first did not store, and the tree is whole.
func TestKillServerMidPull(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(3000))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "big", teamcache.Options{PackSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "r")
	// Small ranges, two at a time, so the pull takes many requests; the
	// server dies once the pull has stored (and flushed: a batch is
	// flushed at 2,048 blobs) a good part of the tree, from the pull's own
	// progress report, so the kill cannot come after the last blob.
	var got atomic.Int64
	slow := teamcache.Options{Jobs: 2, MaxRange: 2 << 10, MergeGap: -1,
		Progress: func(string, int64) func(int64) {
			return func(int64) {
				if got.Add(1) == 2300 {
					e.srv.Kill()
				}
			}
		}}
	_, err := teamcache.Pull(ctx, d2.Store, e.b, "big", dest, nil, slow)
	if err == nil {
		t.Fatal("pull succeeded although the server was killed mid-pull")
	}
	t.Logf("pull with the server killed: %v", err)
	if _, serr := os.Stat(manifest.PathFor(dest)); !errors.Is(serr, fs.ErrNotExist) {
		t.Fatalf("a manifest was written by a failed pull: %v", serr)
	}
	e.srv.Start()
	res, err := teamcache.Pull(ctx, d2.Store, e.b, "big", dest, nil, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused < 300 || res.Reused+res.BlobsFetched != res.Blobs {
		t.Fatalf("rerun pull: %+v", res)
	}
	if _, err := engine.Link(ctx, d2, engine.LinkOptions{ManifestPath: res.ManifestPath, Method: vfs.Copy}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, filepath.Join(root, "node_modules"), filepath.Join(dest, "node_modules"))
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestCorruptBlobRejected corrupts objects in the bucket (a large blob's
// zstd object and a frame in a pack: same size, other bytes; and cut
// short): a pull detects each, names the object, stores nothing of the
// blob and writes no manifest.
func TestCorruptBlobRejected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(5))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	keys := treeKeys(t, root)
	inv, err := teamcache.LoadInventory(ctx, e.b, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var large, small cas.Key
	for _, k := range keys {
		if k.Size > teamcache.LargeBlob {
			large = k
		} else if k.Size > 10 {
			small = k
		}
	}
	sw, _ := inv.Where(small)
	for name, c := range map[string]struct {
		victim cas.Key
		object string
		change func([]byte) []byte
	}{
		"zstd object flipped": {large, teamcache.ZstdKey(large), func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0xff; return b }},
		"zstd object short":   {large, teamcache.ZstdKey(large), func(b []byte) []byte { return b[:len(b)-1] }},
		"pack frame flipped": {small, teamcache.PackKey(sw.Pack), func(b []byte) []byte {
			b = bytes.Clone(b)
			b[sw.Offset+sw.Length/2] ^= 0xff
			return b
		}},
		"pack cut short": {small, teamcache.PackKey(sw.Pack), func(b []byte) []byte { return b[:sw.Offset+1] }},
	} {
		t.Run(name, func(t *testing.T) {
			path := e.srv.ObjectPath(bucket, "cache/"+c.object)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o644)
			if err := os.WriteFile(path, c.change(orig), 0o644); err != nil {
				t.Fatal(err)
			}
			d2 := newStore(t)
			dest := filepath.Join(t.TempDir(), "r")
			_, err = teamcache.Pull(ctx, d2.Store, e.b, "app", dest, d2.AddRoot, teamcache.Options{})
			if !errors.Is(err, cas.ErrMismatch) || !strings.Contains(err.Error(), c.object) {
				t.Fatalf("pull of a corrupt blob: %v", err)
			}
			t.Logf("reported: %v", err)
			if d2.Store.Has(c.victim) {
				t.Fatal("the corrupt blob entered the store")
			}
			if _, err := os.Stat(manifest.PathFor(dest)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a manifest was written for a failed pull: %v", err)
			}
		})
	}
}

// TestRemoteGC keeps every blob of every tree and deletes the rest (only
// past the grace period, and not on a dry run): a pack no tree needs goes
// whole, index first.
func TestRemoteGC(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	files := sampleFiles(20)
	d1, root1 := project(t, files)
	files["node_modules/c/new.js"] = "only in the second tree\n"
	d2, root2 := project(t, files)
	files["node_modules/d/gone.js"] = "only in a deleted tree\n"
	d3, root3 := project(t, files)
	for i, p := range []struct {
		d    *engine.Direct
		root string
	}{{d1, root1}, {d2, root2}, {d3, root3}} {
		if _, err := teamcache.Push(ctx, p.d.Store, mpathOf(p.root), e.b, fmt.Sprintf("t%d", i+1), teamcache.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.b.Delete(ctx, teamcache.TreeKey("t3")); err != nil {
		t.Fatal(err)
	}
	all := remoteKeys(t, e.b, "")
	res, err := teamcache.GC(ctx, e.b, time.Hour, false, teamcache.Options{})
	if err != nil || res.Removed != 0 || res.KeptYoung != 1 {
		t.Fatalf("gc within grace: %+v, %v", res, err)
	}
	res, err = teamcache.GC(ctx, e.b, 0, true, teamcache.Options{})
	if err != nil || res.Removed != 2 || len(remoteKeys(t, e.b, "")) != len(all) {
		t.Fatalf("dry gc: %+v, %v", res, err)
	}
	res, err = teamcache.GC(ctx, e.b, 0, false, teamcache.Options{})
	if err != nil || res.Removed != 2 || res.Trees != 2 {
		t.Fatalf("gc: %+v, %v", res, err)
	}
	if n := checkTreesComplete(t, e.b); n != 2 {
		t.Fatalf("%d trees", n)
	}
	if got := len(remoteKeys(t, e.b, "")); got != len(all)-2 {
		t.Fatalf("%d objects left of %d, want the deleted tree's pack and index gone", got, len(all))
	}
	trees, err := teamcache.List(ctx, e.b)
	if err != nil || len(trees) != 2 || trees[0].Name != "t1" || trees[0].Size == 0 || trees[0].Modified.IsZero() {
		t.Fatalf("ls: %+v, %v", trees, err)
	}
	pullAndCompare(t, e.b, "t2", root2, teamcache.Options{})
}

// TestRemoteGCRepack: a pack mostly dead is rewritten with its live frames
// only; a tree whose locations name the old pack still pulls, before the
// old pack is deleted (from it) and after (re-planned from the indexes).
func TestRemoteGCRepack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	many := map[string]string{}
	for i := range 10 {
		many[fmt.Sprintf("node_modules/m/f%d.js", i)] = strings.Repeat(fmt.Sprintf("// unique %d\n", i), 100)
	}
	d1, root1 := project(t, many)
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root1), e.b, "wide", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	d2, root2 := project(t, map[string]string{"node_modules/m/f3.js": many["node_modules/m/f3.js"]})
	if r, err := teamcache.Push(ctx, d2.Store, mpathOf(root2), e.b, "narrow", teamcache.Options{}); err != nil || r.BlobsSent != 0 {
		t.Fatalf("push reusing a packed blob: %+v %v", r, err)
	}
	before, _ := teamcache.LoadInventory(ctx, e.b, teamcache.Options{})
	if err := e.b.Delete(ctx, teamcache.TreeKey("wide")); err != nil {
		t.Fatal(err)
	}
	res, err := teamcache.GC(ctx, e.b, 0, false, teamcache.Options{})
	if err != nil || res.Repacked != 1 {
		t.Fatalf("gc: %+v, %v", res, err)
	}
	after, _ := teamcache.LoadInventory(ctx, e.b, teamcache.Options{})
	if len(before.Packs) != 1 || len(after.Packs) != 1 {
		t.Fatalf("packs before %d, after %d", len(before.Packs), len(after.Packs))
	}
	for id, ix := range after.Packs {
		if _, old := before.Packs[id]; old || len(ix.Entries) != 1 {
			t.Fatalf("after repack: pack %s with %d frames", id, len(ix.Entries))
		}
	}
	// The old pack is still there (marked), and the tree's locations work.
	pres := pullAndCompare(t, e.b, "narrow", root2, teamcache.Options{})
	if pres.BlobsFetched != 1 {
		t.Fatalf("pull after repack: %+v", pres)
	}
	// The next gc deletes the old pack and its marker; the tree's
	// locations now name a missing pack, and the pull re-plans.
	res, err = teamcache.GC(ctx, e.b, 0, false, teamcache.Options{})
	if err != nil || res.Removed != 2 || res.Repacked != 0 {
		t.Fatalf("second gc: %+v, %v", res, err)
	}
	if n := len(remoteKeys(t, e.b, teamcache.PackPrefix)); n != 2 {
		t.Fatalf("%d objects under packs/, want the new pack and its index", n)
	}
	pullAndCompare(t, e.b, "narrow", root2, teamcache.Options{})
}

// TestBadCredentials: a wrong secret or key gives ErrAuth, naming neither.
func TestBadCredentials(t *testing.T) {
	srv := s3test.Start(t, bucket)
	const wrong = "wrong-secret-must-not-leak-42"
	for name, env := range map[string][2]string{
		"wrong secret": {s3test.AccessKey, wrong},
		"unknown key":  {"nosuchkeyid", wrong},
	} {
		t.Run(name, func(t *testing.T) {
			srv.SetEnv(t)
			t.Setenv("AWS_ACCESS_KEY_ID", env[0])
			t.Setenv("AWS_SECRET_ACCESS_KEY", env[1])
			b, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket, Endpoint: srv.Endpoint(), Retries: 1})
			if err != nil {
				t.Fatal(err)
			}
			_, err = teamcache.List(context.Background(), b)
			if !errors.Is(err, remote.ErrAuth) || strings.Contains(err.Error(), wrong) {
				t.Fatalf("got %v", err)
			}
			t.Logf("reported: %v", err)
		})
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	if _, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket, Endpoint: srv.Endpoint()}); !errors.Is(err, remote.ErrNoCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
}

func TestLockName(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := teamcache.LockName(dir); !errors.Is(err, teamcache.ErrNoLockFile) {
		t.Fatalf("no lock file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "yarn.lock"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "package-lock.json"), []byte("{}"), 0o644)
	n1, p, err := teamcache.LockName(dir)
	if err != nil || !strings.HasPrefix(n1, "npm-") || len(n1) != len("npm-")+16 || filepath.Base(p) != "package-lock.json" || teamcache.CheckName(n1) != nil {
		t.Fatalf("%q %q %v", n1, p, err)
	}
	os.WriteFile(filepath.Join(dir, "package-lock.json"), []byte("{ }"), 0o644)
	if n2, _, _ := teamcache.LockName(dir); n2 == n1 {
		t.Fatal("a changed lock file gives the same name")
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "-x", strings.Repeat("a", 201), "a\n", "x y", "é"} {
		if teamcache.CheckName(bad) == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	for _, good := range []string{"a", "_x", "npm-0123.v2_x", strings.Repeat("a", 200)} {
		if err := teamcache.CheckName(good); err != nil {
			t.Errorf("name %q refused: %v", good, err)
		}
	}
}

// slowReads delays every read of a real backend, so that concurrent
// fetches overlap, and counts them.
type slowReads struct {
	remote.Backend
	reads atomic.Int64
}

func (s *slowReads) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.reads.Add(1)
	time.Sleep(300 * time.Millisecond)
	return s.Backend.Get(ctx, key)
}

func (s *slowReads) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.reads.Add(1)
	time.Sleep(300 * time.Millisecond)
	return s.Backend.GetRange(ctx, key, off, n)
}

// TestConcurrentFetchesCoalesce: eight callers fetching the same tree at
// once, into different batches, read each range and object once, and
// every caller sees every blob stored once its FetchAll returns.
func TestConcurrentFetchesCoalesce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(1))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	tr, _, err := teamcache.FetchTree(ctx, e.b, "app")
	if err != nil {
		t.Fatal(err)
	}
	d2 := newStore(t)
	slow := &slowReads{Backend: e.b}
	f := &teamcache.Fetcher{Store: d2.Store, Remote: slow}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.FetchAll(ctx, tr, teamcache.Options{}, &teamcache.Result{}); err != nil {
				errs <- err
				return
			}
			for _, k := range tr.Keys() {
				if !d2.Store.Has(k) {
					errs <- fmt.Errorf("blob %s not stored when FetchAll returned", k)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One range of the pack, one zstd object.
	if n := slow.reads.Load(); n != 2 {
		t.Fatalf("%d reads for 8 concurrent fetches of one tree, want 2", n)
	}
}
