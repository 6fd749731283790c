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

// remoteKeys lists the blob objects in the bucket with their sizes.
func remoteKeys(t *testing.T, b remote.Backend) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := b.List(context.Background(), teamcache.BlobPrefix, func(o remote.ObjectInfo) error {
		out[o.Key] = o.Size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTreesComplete fails if any tree in the remote names a blob the
// remote lacks: the commit-record invariant.
func checkTreesComplete(t *testing.T, b remote.Backend) int {
	t.Helper()
	ctx := context.Background()
	have := remoteKeys(t, b)
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
			if size, ok := have[teamcache.BlobKey(k)]; !ok || size != k.Size {
				t.Fatalf("tree %s references %s, which the remote lacks", ti.Name, k)
			}
		}
	}
	return len(trees)
}

func TestPushPullRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(40))
	res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-1", teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, keys, _, _ := teamcache.EncodeManifest(mpathOf(root))
	if res.Trees != 1 || res.BlobsSent != int64(len(keys)) || res.Reused != 0 {
		t.Fatalf("first push: %+v (want %d blobs sent)", res, len(keys))
	}
	if got := len(remoteKeys(t, e.b)); got != len(keys) {
		t.Fatalf("%d blob objects, want %d", got, len(keys))
	}
	// Objects are named as in the local store.
	for _, k := range keys {
		if _, err := os.Stat(e.srv.ObjectPath(bucket, "cache/"+k.RelPath())); err != nil {
			t.Fatalf("blob %s not at its store name in the bucket: %v", k, err)
		}
	}

	// The same push again sends nothing.
	again, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-1", teamcache.Options{})
	if err != nil || again.BlobsSent != 0 || again.Trees != 0 || again.Reused != int64(len(keys)) {
		t.Fatalf("unchanged push: %+v, %v", again, err)
	}
	// Under another name, only the tree goes up (checked with HEADs).
	other, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app-copy", teamcache.Options{ListThreshold: 1 << 30})
	if err != nil || other.BlobsSent != 0 || other.Trees != 1 {
		t.Fatalf("push under a new name: %+v, %v", other, err)
	}

	// Pull into an empty store and an empty directory, then copy out.
	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "restored")
	pres, err := teamcache.Pull(ctx, d2.Store, e.b, "app-1", dest, d2.AddRoot, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pres.BlobsFetched != int64(len(keys)) || pres.Reused != 0 {
		t.Fatalf("cold pull: %+v", pres)
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

// TestKillServerMidPush kills the S3 server while a push is uploading,
// restarts it and pushes again: the retry completes, sends only what was
// missing, and no tree ever names a missing blob.
func TestKillServerMidPush(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(3000))
	blobDir := e.srv.ObjectPath(bucket, "cache/blake3")
	done := make(chan error, 1)
	go func() {
		_, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "big", teamcache.Options{Jobs: 4})
		done <- err
	}()
	// Kill once some, not all, blobs are up.
	deadline := time.Now().Add(60 * time.Second)
	for countFiles(blobDir) < 200 {
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
	before := len(remoteKeys(t, e.b))
	res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "big", teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused < int64(before)-8 || res.BlobsSent+res.Reused != res.Blobs || res.Trees != 1 {
		t.Fatalf("resumed push: %+v (%d blobs were up before)", res, before)
	}
	t.Logf("resumed push: %d blobs were up, %d sent now", res.Reused, res.BlobsSent)
	if n := checkTreesComplete(t, e.b); n != 1 {
		t.Fatalf("%d trees, want 1", n)
	}
	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "r")
	pres, err := teamcache.Pull(ctx, d2.Store, e.b, "big", dest, nil, teamcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Link(ctx, d2, engine.LinkOptions{ManifestPath: pres.ManifestPath, Method: vfs.Copy}); err != nil {
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

// TestCorruptBlobRejected corrupts blob objects in the bucket (same size,
// other bytes; and cut short): a pull detects each, names the object,
// stores nothing of it and writes no manifest.
func TestCorruptBlobRejected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(5))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	_, keys, _, _ := teamcache.EncodeManifest(mpathOf(root))
	for name, corrupt := range map[string]func([]byte) []byte{
		"flipped": func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0xff; return b },
		"short":   func(b []byte) []byte { return b[:len(b)-1] },
	} {
		t.Run(name, func(t *testing.T) {
			var victim cas.Key
			for _, k := range keys {
				if k.Size > 1<<20 {
					victim = k
				}
			}
			path := e.srv.ObjectPath(bucket, "cache/"+victim.RelPath())
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o644)
			if err := os.WriteFile(path, corrupt(orig), 0o644); err != nil {
				t.Fatal(err)
			}
			d2 := newStore(t)
			dest := filepath.Join(t.TempDir(), "r")
			_, err = teamcache.Pull(ctx, d2.Store, e.b, "app", dest, d2.AddRoot, teamcache.Options{})
			if !errors.Is(err, cas.ErrMismatch) || !strings.Contains(err.Error(), victim.RelPath()) {
				t.Fatalf("pull of a corrupt blob: %v", err)
			}
			t.Logf("reported: %v", err)
			if d2.Store.Has(victim) {
				t.Fatal("the corrupt blob entered the store")
			}
			if _, err := os.Stat(manifest.PathFor(dest)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a manifest was written for a failed pull: %v", err)
			}
			// Nothing else of it lies around either.
			var stray []string
			filepath.WalkDir(d2.Store.Root(), func(p string, de fs.DirEntry, err error) error {
				if err == nil && de.Type().IsRegular() {
					if b, _ := os.ReadFile(p); bytes.Equal(b, corrupt(orig)) {
						stray = append(stray, p)
					}
				}
				return nil
			})
			if len(stray) > 0 {
				t.Fatalf("corrupt content left in the store: %v", stray)
			}
		})
	}
}

// TestRemoteGC keeps every blob of every tree and deletes the rest (only
// past the grace period, and not on a dry run).
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
	all := remoteKeys(t, e.b)
	res, err := teamcache.GC(ctx, e.b, time.Hour, false, teamcache.Options{})
	if err != nil || res.Removed != 0 || res.KeptYoung != 1 {
		t.Fatalf("gc within grace: %+v, %v", res, err)
	}
	res, err = teamcache.GC(ctx, e.b, 0, true, teamcache.Options{})
	if err != nil || res.Removed != 1 || len(remoteKeys(t, e.b)) != len(all) {
		t.Fatalf("dry gc: %+v, %v", res, err)
	}
	res, err = teamcache.GC(ctx, e.b, 0, false, teamcache.Options{})
	if err != nil || res.Removed != 1 || res.Trees != 2 {
		t.Fatalf("gc: %+v, %v", res, err)
	}
	if n := checkTreesComplete(t, e.b); n != 2 {
		t.Fatalf("%d trees", n)
	}
	if got := len(remoteKeys(t, e.b)); got != len(all)-1 {
		t.Fatalf("%d blobs left of %d", got, len(all))
	}
	trees, err := teamcache.List(ctx, e.b)
	if err != nil || len(trees) != 2 || trees[0].Name != "t1" || trees[0].Size == 0 || trees[0].Modified.IsZero() {
		t.Fatalf("ls: %+v, %v", trees, err)
	}
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
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "-x", strings.Repeat("a", 201)} {
		if teamcache.CheckName(bad) == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

// slowGets delays every Get of a real backend, so that concurrent fetches
// of one blob overlap, and counts them.
type slowGets struct {
	remote.Backend
	gets atomic.Int64
}

func (s *slowGets) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.gets.Add(1)
	time.Sleep(300 * time.Millisecond)
	return s.Backend.Get(ctx, key)
}

// TestConcurrentFetchesCoalesce: eight callers fetching the same blob at
// once, into different batches, cause one download, and every caller sees
// the blob stored once its Fetch returns.
func TestConcurrentFetchesCoalesce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(1))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	_, keys, _, _ := teamcache.EncodeManifest(mpathOf(root))
	d2 := newStore(t)
	slow := &slowGets{Backend: e.b}
	f := &teamcache.Fetcher{Store: d2.Store, Remote: slow}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := d2.Store.NewBatch()
			defer batch.Discard()
			if _, err := f.Fetch(ctx, batch, keys[0]); err != nil {
				errs <- err
				return
			}
			if err := batch.Flush(); err != nil {
				errs <- err
				return
			}
			if !d2.Store.Has(keys[0]) {
				errs <- fmt.Errorf("blob not stored when Fetch returned")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := slow.gets.Load(); n != 1 {
		t.Fatalf("%d downloads for 8 concurrent fetches of one blob, want 1", n)
	}
}
