package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

func ingestDirect(t *testing.T, store, dir string, opts IngestOptions) *IngestResult {
	t.Helper()
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	opts.Dir = dir
	res, err := d.Ingest(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func entryOf(t *testing.T, proj, key string) manifest.Entry {
	t.Helper()
	m, err := manifest.Open(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var e manifest.Entry
	m.View(func(r *manifest.Reader) error {
		e, _, err = r.Get(key)
		return err
	})
	return e
}

// TestAdoption: tier1 direct ingest adopts a file's own inode (no copy):
// the blob is that inode, read-only and the user's; the path becomes a
// symlink to it; a second project with the same content deduplicates
// against it; verify is clean; --copy copies.
func TestAdoption(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	a := filepath.Join(base, "a")
	writeFiles(t, a, map[string]string{"package.json": "{}", "lib/x.js": "same content", "lib/y.sh": "#!/bin/sh\n"})
	os.Chmod(filepath.Join(a, "lib/y.sh"), 0o755)
	var st0 os.FileInfo
	st0, _ = os.Stat(filepath.Join(a, "lib/x.js"))
	res := ingestDirect(t, store, filepath.Join(a, "lib"), IngestOptions{})
	if res.Adopted != 2 || res.Copied != 0 {
		t.Fatalf("adopted %d, copied %d; want 2 and 0", res.Adopted, res.Copied)
	}
	e := entryOf(t, a, "lib/x.js")
	s, _ := cas.Open(store, cas.Options{})
	blob, err := os.Stat(s.Path(e.Key()))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(blob, st0) || blob.Mode().Perm() != 0o444 {
		t.Errorf("blob is not the adopted inode, or mode %v != 0444", blob.Mode().Perm())
	}
	if e.Mode != 0o644 {
		t.Errorf("manifest records mode %o, want the file's own 0644", e.Mode)
	}
	if got, _ := os.Readlink(filepath.Join(a, "lib/x.js")); got != s.Path(e.Key()) {
		t.Errorf("path is not projected: %q", got)
	}
	ey := entryOf(t, a, "lib/y.sh")
	if b, _ := os.Stat(s.Path(ey.Key())); b == nil || b.Mode().Perm() != 0o555 {
		t.Errorf("exec blob mode %v, want 0555", b.Mode())
	}

	b := filepath.Join(base, "b")
	writeFiles(t, b, map[string]string{"package.json": "{}", "lib/x.js": "same content", "lib/z.js": "other"})
	res = ingestDirect(t, store, filepath.Join(b, "lib"), IngestOptions{})
	if res.Adopted != 1 || res.NewBlobs != 1 || res.Files != 2 {
		t.Errorf("second project: adopted %d, new %d, files %d; want 1, 1, 2 (x.js deduplicated)", res.Adopted, res.NewBlobs, res.Files)
	}
	c := filepath.Join(base, "c")
	writeFiles(t, c, map[string]string{"package.json": "{}", "lib/w.js": "copied"})
	res = ingestDirect(t, store, filepath.Join(c, "lib"), IngestOptions{Copy: true})
	if res.Adopted != 0 || res.Copied != 1 {
		t.Errorf("--copy: adopted %d, copied %d", res.Adopted, res.Copied)
	}
	d, _ := OpenDirect(store)
	v, err := d.Verify(context.Background(), VerifyOptions{})
	if err != nil || !v.OK() {
		t.Errorf("verify after adoption: %v %+v", err, v)
	}
}

// TestAdoptionOpenWriterCopies: a file another process holds open for
// writing is copied, not adopted, and what that process writes afterwards
// changes neither the blob nor the manifest.
func TestAdoptionOpenWriterCopies(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/busy.log": "before"})
	busy := filepath.Join(proj, "lib/busy.log")
	holder := exec.Command("sh", "-c", `exec 3>>"$1"; echo ready; read _; echo after >&3`, "sh", busy)
	stdin, _ := holder.StdinPipe()
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	out.Read(buf) // the writer holds the file open now
	store := filepath.Join(base, "store")
	res := ingestDirect(t, store, filepath.Join(proj, "lib"), IngestOptions{})
	stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := holder.Wait(); err != nil {
		t.Fatal(err)
	}
	if res.Adopted != 0 || res.Copied != 1 {
		t.Fatalf("adopted %d, copied %d; want the open file copied", res.Adopted, res.Copied)
	}
	e := entryOf(t, proj, "lib/busy.log")
	s, _ := cas.Open(store, cas.Options{})
	if got, _ := os.ReadFile(s.Path(e.Key())); string(got) != "before" {
		t.Errorf("blob content %q, want %q", got, "before")
	}
	ingestDirect(t, store, filepath.Join(proj, "lib"), IngestOptions{})
	if e2 := entryOf(t, proj, "lib/busy.log"); e2.Sum != e.Sum {
		t.Error("the manifest's hash changed after the writer wrote")
	}
}

// TestAdoptionSecondLinkCopies: a file with a second hardlink outside the
// tree is copied, and the outside file keeps its mode.
func TestAdoptionSecondLinkCopies(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/shared.js": "linked"})
	outside := filepath.Join(base, "outside.js")
	if err := os.Link(filepath.Join(proj, "lib/shared.js"), outside); err != nil {
		t.Fatal(err)
	}
	res := ingestDirect(t, filepath.Join(base, "store"), filepath.Join(proj, "lib"), IngestOptions{})
	if res.Adopted != 0 || res.Copied != 1 {
		t.Errorf("adopted %d, copied %d; want the linked file copied", res.Adopted, res.Copied)
	}
	if info, _ := os.Stat(outside); info.Mode().Perm() != 0o644 {
		t.Errorf("the outside link's mode changed to %v", info.Mode().Perm())
	}
}

// TestAdoptionOtherFilesystem: a store on another filesystem means every
// file is copied, with no error.
func TestAdoptionOtherFilesystem(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "vrift-store-")
	if err != nil {
		t.Skip("no /dev/shm tmpfs here")
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/a.js": "a", "lib/b.js": "b"})
	res := ingestDirect(t, filepath.Join(shm, "store"), filepath.Join(proj, "lib"), IngestOptions{})
	if res.Adopted != 0 || res.Copied != 2 || res.Projected != 2 {
		t.Errorf("adopted %d, copied %d, projected %d; want 0, 2, 2", res.Adopted, res.Copied, res.Projected)
	}
}

// TestAdoptionUndoneOnFailure: an ingest that fails before its manifest is
// committed gives adopted files back: their mode, and their only link.
func TestAdoptionUndoneOnFailure(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	files := map[string]string{"package.json": "{}"}
	for i := range 3000 {
		files[filepath.Join("lib", strconv.Itoa(i/100), strconv.Itoa(i)+".js")] = "content " + strconv.Itoa(i)
	}
	writeFiles(t, proj, files)
	d, err := OpenDirect(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = d.Ingest(ctx, IngestOptions{Dir: filepath.Join(proj, "lib"), Workers: 1,
		Progress: func(files, _ int64) {
			if files > 0 {
				cancel()
			}
		}})
	if err == nil {
		t.Fatal("the ingest was not interrupted")
	}
	for p := range files {
		info, err := os.Lstat(filepath.Join(proj, p))
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o644 {
			t.Fatalf("%s after a failed ingest: %v %v", p, info.Mode(), err)
		}
		if n := info.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Fatalf("%s has %d links after a failed ingest", p, n)
		}
	}
	if _, err := os.Stat(filepath.Join(proj, ".vrift")); err == nil {
		t.Error("a failed first ingest left a manifest")
	}
}

// TestAdoptionUndo: a failed ingest's undo gives back both kinds of
// adopted file. One still pending in the batch is again the user's own
// inode with its own mode; one a flush already published stays the
// read-only blob, and the user's path becomes a private copy with the
// file's mode, content and mtime. A file with the same content as one
// already adopted was never adopted and is left alone.
func TestAdoptionUndo(t *testing.T) {
	base := t.TempDir()
	s, err := cas.Open(filepath.Join(base, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proj := filepath.Join(base, "p")
	files := map[string]string{}
	for i := range 40 {
		files[filepath.Join("d"+strconv.Itoa(i%3), "f"+strconv.Itoa(i))] = "content " + strconv.Itoa(i)
	}
	files["d0/dup"] = "content 0"
	writeFiles(t, proj, files)
	os.Chmod(filepath.Join(proj, "d1/f1"), 0o750)
	tr, err := tree.Open(proj)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dev, _ := s.Dev()
	batch := s.NewBatch()
	defer batch.Discard()
	ad := &adoption{a: batchWriter{b: batch, dev: dev}, uid: uint32(os.Geteuid()), dev: dev}
	adopt := func(p string) (cas.PutResult, adoptOutcome) {
		t.Helper()
		f, err := os.Open(filepath.Join(proj, p))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		pr, how, err := ad.try(context.Background(), f, p, &st, st.Mode&0o111 != 0)
		if err != nil {
			t.Fatal(err)
		}
		return pr, how
	}
	before := map[string]os.FileInfo{}
	keys := map[string]cas.Key{}
	published := map[string]bool{}
	for i := range 40 {
		p := filepath.Join("d"+strconv.Itoa(i%3), "f"+strconv.Itoa(i))
		before[p], _ = os.Stat(filepath.Join(proj, p))
		pr, how := adopt(p)
		if how != adoptedFile {
			t.Fatalf("%s: outcome %d, want adopted (does this filesystem grant write leases?)", p, how)
		}
		keys[p] = pr.Key
		if i == 19 {
			if err := batch.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		published[p] = i <= 19
	}
	if _, how := adopt("d0/dup"); how != alreadyStored {
		t.Fatalf("d0/dup: outcome %d, want already stored", how)
	}
	ad.undo(tr)

	for p, was := range before {
		full := filepath.Join(proj, p)
		now, err := os.Lstat(full)
		if err != nil || !now.Mode().IsRegular() {
			t.Fatalf("%s after undo: %v %v", p, now, err)
		}
		if now.Mode().Perm() != was.Mode().Perm() || now.Sys().(*syscall.Stat_t).Nlink != 1 || !now.ModTime().Equal(was.ModTime()) {
			t.Errorf("%s after undo: mode %v links %d mtime %v; want %v, 1, %v", p, now.Mode().Perm(), now.Sys().(*syscall.Stat_t).Nlink, now.ModTime(), was.Mode().Perm(), was.ModTime())
		}
		if got, _ := os.ReadFile(full); string(got) != files[p] {
			t.Errorf("%s after undo holds %q", p, got)
		}
		blob, err := os.Stat(s.Path(keys[p]))
		switch {
		case published[p]:
			if err != nil || os.SameFile(blob, now) || blob.Mode().Perm()&0o222 != 0 {
				t.Errorf("%s was published: blob %v (err %v) must stay read-only and apart from the user's copy", p, blob, err)
			}
		case err == nil:
			t.Errorf("%s was pending: its blob exists after undo", p)
		case !os.SameFile(was, now):
			t.Errorf("%s was pending: undo replaced its inode rather than giving it back", p)
		}
	}
	if got, _ := os.Stat(filepath.Join(proj, "d0/dup")); got.Mode().Perm() != 0o644 {
		t.Errorf("d0/dup was never adopted, now mode %v", got.Mode().Perm())
	}
}

// TestAdoptedModeRecovered: an ingest killed after its batch published an
// adopted file (the user's path is the read-only blob now) and before its
// manifest recorded the file's mode; the next ingest records the file's
// own mode, not the blob's 0444.
func TestAdoptedModeRecovered(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/x.js": "x"})
	x := filepath.Join(proj, "lib/x.js")
	os.Chmod(x, 0o640)
	s, err := cas.Open(store, cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(x)
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	if pr, err := b.Adopt(context.Background(), f, 0o640, false); err != nil || !pr.New {
		t.Fatalf("adopt: %v %+v", err, pr)
	}
	f.Close()
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(x); info.Mode().Perm() != 0o444 {
		t.Fatalf("adopted file is %v, want 0444", info.Mode().Perm())
	}
	// Here the writer dies; the next ingest:
	ingestDirect(t, store, filepath.Join(proj, "lib"), IngestOptions{})
	if e := entryOf(t, proj, "lib/x.js"); e.Mode != 0o640 {
		t.Errorf("manifest records mode %o, want the file's own 0640", e.Mode)
	}
}

// TestAdoptedModeRecoveredBeforeLink: killed between the adoption's chmod
// and its link into the store, the file is read-only with one link; the
// next ingest still records its own mode (found once by TestKillMidIngest).
func TestAdoptedModeRecoveredBeforeLink(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "lib/x.js": "x"})
	x := filepath.Join(proj, "lib/x.js")
	if err := unix.Setxattr(x, "user.vrift.mode", []byte("640"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	os.Chmod(x, 0o444)
	ingestDirect(t, filepath.Join(base, "store"), filepath.Join(proj, "lib"), IngestOptions{})
	if e := entryOf(t, proj, "lib/x.js"); e.Mode != 0o640 {
		t.Errorf("manifest records mode %o, want the file's own 0640", e.Mode)
	}
}
