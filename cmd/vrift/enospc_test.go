package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/testenv"
)

// fsFree is what root may still write on the filesystem holding p.
func fsFree(t *testing.T, p string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize) // Bsize is uint32 on macOS
}

// randomTree writes n files of size bytes of random content under root/dir.
func randomTree(t *testing.T, root string, n, size int) {
	t.Helper()
	writeTree(t, root, map[string]string{"package.json": "{}"})
	for i := range n {
		b := make([]byte, size)
		rand.Read(b)
		p := filepath.Join(root, "data", fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%03d.bin", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// projectState describes every path below root but .vrift: regular files
// by content hash, symlinks by target, so "untouched" and "nothing
// half-replaced" can be checked path by path.
func projectState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == ".vrift" {
			return filepath.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink " + target
		case d.IsDir():
			out[rel] = "dir"
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			out[rel] = "file " + hex.EncodeToString(sum[:])
		default:
			out[rel] = "other " + d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func countIn(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestStoreFullMidIngest (root): the store sits on a 64 MiB ext4 that fills
// up in the middle of an ingest (direct mode). The ingest fails with one
// line saying the store's filesystem is full and how full; the project is
// untouched (no file swapped, no symlink), its manifest is unchanged, the
// store holds no partial blob and no temp file, and once space is freed the
// same ingest completes and the tree round-trips.
func TestStoreFullMidIngest(t *testing.T) {
	mnt := testenv.LoopFS(t, "64M")
	store := filepath.Join(mnt, "store")
	proj := filepath.Join(t.TempDir(), "proj")
	randomTree(t, proj, 40, 1<<20) // 40 MiB of distinct content
	writeTree(t, proj, map[string]string{"small/a.txt": "already stored\n"})
	// A first ingest of a small part: the manifest exists and must not
	// change when the big one fails.
	mustVrift(t, "--store", store, "ingest", filepath.Join(proj, "small"))
	manifestPath := filepath.Join(proj, ".vrift", "manifest.lmdb")
	manifestBefore := fileSum(t, manifestPath)
	before := projectState(t, proj)
	blobsBefore := countIn(t, filepath.Join(store, "blake3"))

	// Leave 16 MiB: the ingest runs out of space after a dozen files.
	testenv.Fill(t, filepath.Join(mnt, "ballast"), fsFree(t, mnt)-16<<20)
	_, stderr, code := vrift(t, "--store", store, "ingest", proj)
	t.Logf("full store: exit %d: %s", code, strings.TrimSpace(stderr))
	// Mid-ingest ENOSPC, or, once the engine runs cas.Preflight, the
	// early refusal: both must leave everything as it was.
	want := regexp.MustCompile(`^vrift: ingest .*: store filesystem ` + regexp.QuoteMeta(store) +
		`( is full \([0-9.]+ (B|KiB|MiB) free of [0-9.]+ MiB\): .*no space left on device| is too full: this needs about [0-9.]+ MiB, it has [0-9.]+ MiB free of [0-9.]+ MiB)\n$`)
	if code != 1 || !want.MatchString(stderr) {
		t.Fatalf("ingest on a full store: exit %d, stderr %q; want exit 1 and /%s/", code, stderr, want)
	}
	if after := projectState(t, proj); !equalMaps(before, after) {
		t.Fatalf("the failed ingest changed the project:\n%s", diffMaps(before, after))
	}
	if got := fileSum(t, manifestPath); got != manifestBefore {
		t.Fatal("the failed ingest changed the manifest")
	}
	if n := countIn(t, filepath.Join(store, "tmp")); n != 0 {
		t.Fatalf("%d temp files left in the store", n)
	}
	// Blobs that were published before the disk filled are whole (verify
	// re-hashes every one); no partial one has a name.
	blobsFailed := countIn(t, filepath.Join(store, "blake3"))
	if out, errs, code := vrift(t, "--store", store, "verify"); code != 0 {
		t.Fatalf("verify after the failed ingest: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("blobs: %d before, %d after the failed ingest (whole, kept for the retry)", blobsBefore, blobsFailed)

	os.Remove(filepath.Join(mnt, "ballast"))
	mustVrift(t, "--store", store, "ingest", proj)
	for p, desc := range before {
		if !strings.HasPrefix(desc, "file ") {
			continue
		}
		abs := filepath.Join(proj, p)
		if fi, err := os.Lstat(abs); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("%s is not projected after the retry", p)
		}
		if got := "file " + fileSum(t, abs); got != desc {
			t.Fatalf("%s reads back different content after the retry", p)
		}
	}
	if _, errs, code := vrift(t, "--store", store, "verify"); code != 0 {
		t.Fatalf("verify after the retry: %s", errs)
	}
	if n := countIn(t, filepath.Join(store, "tmp")); n != 0 {
		t.Fatalf("%d temp files left in the store after the retry", n)
	}
}

// TestProjectFullDuringSwap (root): the project's filesystem runs out of
// inodes while tier1 ingest swaps files for symlinks. The ingest fails, but
// every path is either the original file or a whole projection of it (no
// file lost, no swap temp left), the store is whole, and a re-run after
// freeing space projects everything.
func TestProjectFullDuringSwap(t *testing.T) {
	// 4096 inodes; blocks to spare, so the inodes run out first.
	mnt := testenv.LoopFS(t, "32M", "-N", "4096")
	store := filepath.Join(t.TempDir(), "store")
	proj := filepath.Join(mnt, "proj")
	files := map[string]string{"package.json": "{}"}
	for i := range 300 {
		files[fmt.Sprintf("lib/m%d/f%03d.js", i%10, i)] = fmt.Sprintf("module.exports = %d\n", i)
	}
	writeTree(t, proj, files)
	// Each file gets a second link outside the project, so a swap frees
	// no inode: every symlink costs one. (Linked before the first ingest:
	// a link changes the file's ctime.)
	for p := range files {
		keep := filepath.Join(mnt, "keep", p)
		os.MkdirAll(filepath.Dir(keep), 0o755)
		if err := os.Link(filepath.Join(proj, p), keep); err != nil {
			t.Fatal(err)
		}
	}
	// tier2 first: blobs and manifest exist, nothing swapped yet; the tier1
	// run then finds every file unchanged and goes straight to the swaps.
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", proj)
	before := projectState(t, proj)
	manifestBefore := fileSum(t, filepath.Join(proj, ".vrift", "manifest.lmdb"))
	// Then all inodes but 100 go.
	ballast := filepath.Join(mnt, "ballast")
	os.Mkdir(ballast, 0o755)
	n := 0
	for ; ; n++ {
		f, err := os.Create(filepath.Join(ballast, fmt.Sprint(n)))
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for i := range 100 {
		os.Remove(filepath.Join(ballast, fmt.Sprint(n-1-i)))
	}
	_, stderr, code := vrift(t, "--store", store, "ingest", proj)
	t.Logf("full project filesystem: exit %d: %s", code, strings.TrimSpace(stderr))
	if code != 1 || !regexp.MustCompile(`^vrift: ingest .*: project .*: no space left on device\n$`).MatchString(stderr) {
		t.Fatalf("ingest with no inode left: exit %d, stderr %q", code, stderr)
	}
	after := projectState(t, proj)
	swapped := 0
	for p, desc := range before {
		got, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s is gone", p)
		case got == desc:
		case strings.HasPrefix(got, "symlink ") && strings.HasPrefix(desc, "file "):
			if "file "+fileSum(t, filepath.Join(proj, p)) != desc {
				t.Errorf("%s projects the wrong content", p)
			}
			swapped++
		default:
			t.Errorf("%s: %s, was %s", p, got, desc)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("left behind: %s", p)
		}
	}
	t.Logf("%d of %d files projected before the filesystem filled", swapped, len(files))
	if swapped == 0 || swapped == len(files) {
		t.Errorf("%d of %d swapped: the filesystem did not fill mid-swap", swapped, len(files))
	}
	if got := fileSum(t, filepath.Join(proj, ".vrift", "manifest.lmdb")); got != manifestBefore {
		t.Error("the manifest changed")
	}

	os.RemoveAll(ballast)
	mustVrift(t, "--store", store, "ingest", proj)
	for p, desc := range before {
		if !strings.HasPrefix(desc, "file ") {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(proj, p)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("%s not projected after the re-run", p)
		}
		if "file "+fileSum(t, filepath.Join(proj, p)) != desc {
			t.Fatalf("%s: wrong content after the re-run", p)
		}
	}
}

// TestLinkDestinationFull (root): vrift link --method copy into a
// filesystem that fills up fails, leaves every path either absent or a
// whole copy (no partial file, no temp), and a re-run after freeing space
// completes the copy.
func TestLinkDestinationFull(t *testing.T) {
	mnt := testenv.LoopFS(t, "32M")
	store := filepath.Join(t.TempDir(), "store")
	proj := filepath.Join(t.TempDir(), "proj")
	randomTree(t, proj, 24, 1<<20)
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", proj)
	want := projectState(t, proj)
	to := filepath.Join(mnt, "copy")
	testenv.Fill(t, filepath.Join(mnt, "ballast"), fsFree(t, mnt)-10<<20)
	_, stderr, code := vrift(t, "--store", store, "link", "--method", "copy", "--to", to, proj)
	t.Logf("full destination: exit %d: %s", code, strings.TrimSpace(stderr))
	if code != 1 || !strings.Contains(stderr, "no space left on device") {
		t.Fatalf("link into a full filesystem: exit %d, stderr %q", code, stderr)
	}
	got := projectState(t, to)
	copied := 0
	for p, desc := range got {
		if want[p] != desc {
			t.Errorf("%s: %s, want %s (partial or stray)", p, desc, want[p])
		}
		if strings.HasPrefix(desc, "file ") {
			copied++
		}
	}
	t.Logf("%d whole files copied before the filesystem filled", copied)
	os.Remove(filepath.Join(mnt, "ballast"))
	mustVrift(t, "--store", store, "link", "--method", "copy", "--to", to, proj)
	if got := projectState(t, to); !equalMaps(want, got) {
		t.Fatalf("copy after the re-run differs:\n%s", diffMaps(want, got))
	}
}

// TestDaemonStoreFull (root): the daemon's shared store fills up in the
// middle of alice's ingest. She gets the clear error, her project and the
// store are as before (no temp left once her session ends), bob's ingest is
// still served, and alice's retry completes once space is freed.
func TestDaemonStoreFull(t *testing.T) {
	e := newDaemonEnv(t)
	mnt := testenv.LoopFSIn(t, e.base, "64M")
	os.Chmod(mnt, 0o755)
	e.store = filepath.Join(mnt, "the_source")
	os.Mkdir(e.store, 0o755)
	sh(t, "chown", "vrift:vrift", e.store)
	e.start()
	proj := filepath.Join(e.base, "alice", "proj")
	files := map[string]string{"package.json": "{}"}
	for i := range 40 {
		b := make([]byte, 1<<20)
		rand.Read(b)
		files[fmt.Sprintf("data/f%02d.bin", i)] = string(b)
	}
	e.tree("alice", proj, files)
	before := projectState(t, proj)
	testenv.Fill(t, filepath.Join(mnt, "ballast"), fsFree(t, mnt)-16<<20)

	out, code := e.as("alice", "ingest", proj)
	t.Logf("alice on a full shared store: exit %d: %s", code, strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, "store filesystem "+e.store+" is full (") || !strings.Contains(out, " free of ") {
		t.Fatalf("alice's ingest on a full store: exit %d\n%s\ndaemon log:\n%s", code, out, e.log)
	}
	if after := projectState(t, proj); !equalMaps(before, after) {
		t.Fatalf("the failed ingest changed alice's project:\n%s", diffMaps(before, after))
	}
	if _, err := os.Stat(filepath.Join(proj, ".vrift")); err == nil {
		t.Error("the failed first ingest left a manifest")
	}
	// Her session ended with her connection: its unflushed temps go.
	tmp := filepath.Join(e.store, "tmp")
	for i := 0; countIn(t, tmp) != 0; i++ {
		if i == 50 {
			t.Fatalf("%d temp files left in the shared store", countIn(t, tmp))
		}
		time.Sleep(100 * time.Millisecond)
	}

	bobProj := filepath.Join(e.base, "bob", "small")
	e.tree("bob", bobProj, map[string]string{"go.mod": "module b\n", "src/a.go": "package a\n"})
	e.mustAs("bob", "ingest", bobProj)

	os.Remove(filepath.Join(mnt, "ballast"))
	e.mustAs("alice", "ingest", proj)
	for p, desc := range before {
		if strings.HasPrefix(desc, "file ") && "file "+fileSum(t, filepath.Join(proj, p)) != desc {
			t.Fatalf("%s: wrong content after the retry", p)
		}
	}
	e.mustAs("alice", "verify") // every blob whole
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffMaps(a, b map[string]string) string {
	var s strings.Builder
	for k, v := range a {
		if b[k] != v {
			fmt.Fprintf(&s, "  %s: %q -> %q\n", k, v, b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			fmt.Fprintf(&s, "  %s: new %q\n", k, v)
		}
	}
	return s.String()
}
