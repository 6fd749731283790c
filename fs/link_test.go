package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// These tests run the linker on a real store and a real LMDB manifest in a
// temp dir: no root, no other user.

type linkFixture struct {
	t     *testing.T
	base  string
	store *cas.Store
	m     *manifest.Manifest
}

// newLinkFixture stores files (path -> content; a path ending in "*" is
// executable) and symlinks (path -> target) and records them in a
// manifest.
func newLinkFixture(t *testing.T, files, links map[string]string) *linkFixture {
	t.Helper()
	base := t.TempDir()
	store, err := cas.Open(filepath.Join(base, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Create(filepath.Join(base, "m", "manifest.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	err = m.Update(func(w *manifest.Writer) error {
		if err := w.Put(manifest.RootPath, manifest.Entry{Kind: manifest.Dir, Mode: 0o755}); err != nil {
			return err
		}
		dirs := map[string]bool{}
		mkdirs := func(p string) error {
			for d := parentKey(p); d != manifest.RootPath && !dirs[d]; d = parentKey(d) {
				dirs[d] = true
				if err := w.Put(d, manifest.Entry{Kind: manifest.Dir, Mode: 0o755}); err != nil {
					return err
				}
			}
			return nil
		}
		for p, c := range files {
			exec := strings.HasSuffix(p, "*")
			p = strings.TrimSuffix(p, "*")
			r, err := store.Put(context.Background(), strings.NewReader(c), exec)
			if err != nil {
				return err
			}
			mode := uint32(0o644)
			if exec {
				mode = 0o755
			}
			if err := mkdirs(p); err != nil {
				return err
			}
			if err := w.Put(p, manifest.Entry{Kind: manifest.File, Mode: mode, Size: r.Key.Size, Sum: r.Key.Sum}); err != nil {
				return err
			}
		}
		for p, target := range links {
			if err := mkdirs(p); err != nil {
				return err
			}
			if err := w.Put(p, manifest.Entry{Kind: manifest.Symlink, Mode: 0o777, Target: []byte(target)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &linkFixture{t: t, base: base, store: store, m: m}
}

func (f *linkFixture) link(dest string, method Method, force bool) (*LinkResult, error) {
	return Link(context.Background(), f.m, LinkOptions{Dest: dest, Method: method, StoreRoot: f.store.Root(), Force: force})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var fixtureFiles = map[string]string{"a/index.js": "module.exports = 1\n", "a/bin/run.sh*": "#!/bin/sh\n", "b/data.txt": "data\n"}
var fixtureLinks = map[string]string{"a/link": "index.js"}

// TestLinkMethods: every method that needs no special filesystem projects
// the tree with the right content, kind, mode and identity; a second run
// changes nothing.
func TestLinkMethods(t *testing.T) {
	f := newLinkFixture(t, fixtureFiles, fixtureLinks)
	for _, method := range []Method{Symlink, Hardlink, Copy} {
		t.Run(string(method), func(t *testing.T) {
			dest := filepath.Join(f.base, "dest-"+string(method))
			res, err := f.link(dest, method, false)
			if err != nil {
				t.Fatal(err)
			}
			// 8 entries: the root (made before the walk), 3 directories,
			// 3 files and a symlink.
			if res.Created != 7 || res.Unchanged != 1 || len(res.Conflicts) != 0 {
				t.Errorf("first link: %+v", res)
			}
			for p, c := range fixtureFiles {
				p = strings.TrimSuffix(p, "*")
				abs := filepath.Join(dest, p)
				if got := readFile(t, abs); got != c {
					t.Errorf("%s: %q, want %q", p, got, c)
				}
				var st, bst unix.Stat_t
				if err := unix.Lstat(abs, &st); err != nil {
					t.Fatal(err)
				}
				k := keyOf(c, p == "a/bin/run.sh")
				unix.Stat(f.store.Path(k), &bst)
				switch method {
				case Symlink:
					if target, _ := os.Readlink(abs); st.Mode&unix.S_IFMT != unix.S_IFLNK || target != f.store.Path(k) {
						t.Errorf("%s: not a symlink to its blob (%q)", p, target)
					}
				case Hardlink:
					if st.Ino != bst.Ino {
						t.Errorf("%s: not the blob's inode", p)
					}
				case Copy:
					if st.Ino == bst.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
						t.Errorf("%s: not a copy of its own", p)
					}
					if want := map[bool]uint32{true: 0o755, false: 0o644}[p == "a/bin/run.sh"]; uint32(st.Mode)&0o777 != want {
						t.Errorf("%s: mode %o, want %o", p, st.Mode&0o777, want)
					}
				}
			}
			if target, err := os.Readlink(filepath.Join(dest, "a/link")); err != nil || target != "index.js" {
				t.Errorf("the tree's own symlink: %q %v", target, err)
			}
			again, err := f.link(dest, method, false)
			if err != nil || again.Created != 0 || again.Fixed != 0 || again.Unchanged != 8 {
				t.Errorf("second link: %+v %v", again, err)
			}
		})
	}
}

func keyOf(content string, exec bool) cas.Key {
	h := cas.NewHasher()
	h.Write([]byte(content))
	k := cas.Key{Size: int64(len(content)), Exec: exec}
	h.Sum(k.Sum[:0])
	return k
}

// TestLinkConflicts: a user's own file where the manifest has another is a
// conflict, listed and left alone (ErrConflict) unless forced; a stale
// projection is fixed without force.
func TestLinkConflicts(t *testing.T) {
	f := newLinkFixture(t, fixtureFiles, fixtureLinks)
	dest := filepath.Join(f.base, "dest")
	os.MkdirAll(filepath.Join(dest, "b"), 0o755)
	os.WriteFile(filepath.Join(dest, "b/data.txt"), []byte("the user's own\n"), 0o644)
	res, err := f.link(dest, Symlink, false)
	if !errors.Is(err, ErrConflict) || len(res.Conflicts) != 1 || !strings.Contains(res.Conflicts[0], "b/data.txt") {
		t.Fatalf("conflict: %+v %v", res, err)
	}
	if got := readFile(t, filepath.Join(dest, "b/data.txt")); got != "the user's own\n" {
		t.Fatalf("a conflicting file was changed: %q", got)
	}
	if _, err := f.link(dest, Symlink, true); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if got := readFile(t, filepath.Join(dest, "b/data.txt")); got != "data\n" {
		t.Fatalf("forced link left %q", got)
	}
	// A projection pointing at the wrong blob is vrift's own: fixed.
	os.Remove(filepath.Join(dest, "a/index.js"))
	os.Symlink(f.store.Path(keyOf("data\n", false)), filepath.Join(dest, "a/index.js"))
	res, err = f.link(dest, Symlink, false)
	if err != nil || res.Fixed != 1 {
		t.Fatalf("stale projection: %+v %v", res, err)
	}
	if got := readFile(t, filepath.Join(dest, "a/index.js")); got != fixtureFiles["a/index.js"] {
		t.Fatalf("stale projection not fixed: %q", got)
	}
}

// TestLinkKilledTemp: a temp a killed link left beside a file (under the
// name tree.Replace gives it) does not stop the next link, which replaces
// it and leaves none behind.
func TestLinkKilledTemp(t *testing.T) {
	f := newLinkFixture(t, fixtureFiles, fixtureLinks)
	dest := filepath.Join(f.base, "dest")
	os.MkdirAll(filepath.Join(dest, "b"), 0o755)
	tmp := filepath.Join(dest, "b", tree.TempName(tmpPrefix, "data.txt"))
	if err := os.WriteFile(tmp, []byte("half a co"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.link(dest, Copy, false); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "b/data.txt")); got != "data\n" {
		t.Fatalf("after the killed link's temp: %q", got)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temp is still there: %v", err)
	}
}

// TestLinkDoesNotFollowSymlinkedDir: a directory of the destination
// swapped for a symlink to elsewhere makes that path fail; nothing is
// written through it.
func TestLinkDoesNotFollowSymlinkedDir(t *testing.T) {
	f := newLinkFixture(t, fixtureFiles, fixtureLinks)
	dest := filepath.Join(f.base, "dest")
	elsewhere := filepath.Join(f.base, "elsewhere")
	os.MkdirAll(dest, 0o755)
	os.MkdirAll(elsewhere, 0o755)
	if err := os.Symlink(elsewhere, filepath.Join(dest, "b")); err != nil {
		t.Fatal(err)
	}
	_, err := f.link(dest, Copy, true)
	if err == nil {
		t.Fatal("linking through a symlinked directory succeeded")
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Fatalf("written through the symlink: %v", ents)
	}
}

// TestLinkSubtreeAndBadManifest: a subtree projects only its part; a
// subtree the manifest lacks is an error before anything is written.
func TestLinkSubtreeAndBadManifest(t *testing.T) {
	f := newLinkFixture(t, fixtureFiles, fixtureLinks)
	dest := filepath.Join(f.base, "dest")
	res, err := Link(context.Background(), f.m, LinkOptions{Dest: dest, Subtree: "b", StoreRoot: f.store.Root()})
	if err != nil || res.Created != 2 { // b and b/data.txt
		t.Fatalf("subtree: %+v %v", res, err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("outside the subtree projected: %v", err)
	}
	dest2 := filepath.Join(f.base, "dest2")
	if _, err := Link(context.Background(), f.m, LinkOptions{Dest: dest2, Subtree: "nope", StoreRoot: f.store.Root()}); err == nil {
		t.Fatal("a subtree the manifest lacks was accepted")
	}
	if _, err := os.Lstat(dest2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused link created its destination: %v", err)
	}
	if _, err := ParseMethod("teleport"); err == nil {
		t.Error("an unknown method was accepted")
	}
}
