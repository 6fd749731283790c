package engine_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/internal/testenv"
	"github.com/vrift/vrift/service"
)

// The conformance suite: every Store (direct, and the daemon through its
// real rpc and service in this process) must give the same results for the
// same operations. A new Store implementation runs it too.

type storeCase struct {
	name string
	open func(t *testing.T, base string) engine.Store
}

var stores = []storeCase{
	{"direct", func(t *testing.T, base string) engine.Store {
		d, err := engine.OpenDirect(filepath.Join(base, "store"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
	{"daemon", func(t *testing.T, base string) engine.Store {
		sock := testenv.ServeDaemon(t, service.Config{Store: filepath.Join(base, "store"), State: filepath.Join(base, "state")})
		s, err := engine.Open(context.Background(), sock, false, "")
		if err != nil || s.Mode() != "daemon" {
			t.Fatalf("connect: %v, mode %v", err, s)
		}
		return s
	}},
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// figures are what a case measures; every store must give the case's.
type figures map[string]int64

// conformanceCase is one scenario run against every store, each in a
// fresh directory.
type conformanceCase struct {
	name string
	run  func(t *testing.T, s engine.Store, base string) figures
	want figures
}

func ingest(t *testing.T, s engine.Store, dir string) *engine.IngestResult {
	t.Helper()
	res, err := s.Ingest(context.Background(), engine.IngestOptions{Dir: dir, Tier: engine.Tier2})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func gc(t *testing.T, s engine.Store) *engine.GCResult {
	t.Helper()
	res, err := s.GC(context.Background(), engine.GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func verified(t *testing.T, s engine.Store) int64 {
	t.Helper()
	v, err := s.Verify(context.Background(), engine.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() {
		return 1
	}
	return 0
}

var conformanceCases = []conformanceCase{
	{
		name: "ingest, link, status, gc of a deleted project, verify",
		run: func(t *testing.T, s engine.Store, base string) figures {
			a := filepath.Join(base, "a")
			write(t, a, map[string]string{"package.json": "{}", "node_modules/x/index.js": "x", "node_modules/y/index.js": "x",
				"node_modules/z/lib/z.js": "zz"})
			os.Symlink("x/index.js", filepath.Join(a, "node_modules/link"))
			res := ingest(t, s, filepath.Join(a, "node_modules"))
			f := figures{"files": res.Files, "bytes": res.Bytes, "unique": res.Unique, "new_blobs": res.NewBlobs,
				"dirs": res.Dirs, "symlinks": res.Symlinks}
			out := filepath.Join(base, "out")
			lr, err := engine.Link(context.Background(), s, engine.LinkOptions{Project: a, To: out, Method: vfs.Copy})
			if err != nil {
				t.Fatal(err)
			}
			f["created"] = lr.Created
			for _, p := range []string{"node_modules/x/index.js", "node_modules/z/lib/z.js"} {
				want, _ := os.ReadFile(filepath.Join(a, p))
				got, _ := os.ReadFile(filepath.Join(out, p))
				if !bytes.Equal(want, got) {
					t.Errorf("%s: linked copy differs", p)
				}
			}
			st, err := s.Status(context.Background(), engine.StatusOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f["roots"] = int64(st.Roots)
			// The project goes; gc drops its root and sweeps its blobs.
			os.RemoveAll(a)
			g := gc(t, s)
			f["removed"], f["kept"], f["dropped"] = g.Removed, g.Kept, int64(len(g.DroppedRoots))
			f["ok"] = verified(t, s)
			return f
		},
		want: figures{"files": 3, "bytes": 4, "unique": 2, "new_blobs": 2, "dirs": 5, "symlinks": 1, "created": 9, "roots": 1,
			"removed": 2, "kept": 0, "dropped": 1, "ok": 1},
	},
	{
		name: "an unchanged re-ingest stores nothing new",
		run: func(t *testing.T, s engine.Store, base string) figures {
			a := filepath.Join(base, "a")
			write(t, a, map[string]string{"package.json": "{}", "lib/one.js": "1", "lib/two.js": "22", "lib/sub/three.js": "333"})
			first := ingest(t, s, filepath.Join(a, "lib"))
			again := ingest(t, s, filepath.Join(a, "lib"))
			return figures{"first_new": first.NewBlobs, "files": again.Files, "new_blobs": again.NewBlobs, "new_bytes": again.NewBytes}
		},
		want: figures{"first_new": 3, "files": 3, "new_blobs": 0, "new_bytes": 0},
	},
	{
		name: "content two projects share outlives the one deleted",
		run: func(t *testing.T, s engine.Store, base string) figures {
			a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
			write(t, a, map[string]string{"package.json": "{}", "lib/shared.js": "shared", "lib/only-a.js": "a"})
			write(t, b, map[string]string{"package.json": "{}", "lib/shared.js": "shared", "lib/only-b.js": "bb"})
			// (b's new blobs are not compared: the daemon answers New from
			// the caller's session, never from the store, which would tell
			// whether someone else stored the content.)
			ra := ingest(t, s, filepath.Join(a, "lib"))
			ingest(t, s, filepath.Join(b, "lib"))
			os.RemoveAll(a)
			g := gc(t, s)
			// b still links: its blobs, the shared one included, are there.
			out := filepath.Join(base, "out")
			if _, err := engine.Link(context.Background(), s, engine.LinkOptions{Project: b, To: out, Method: vfs.Copy}); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(out, "lib/shared.js"))
			return figures{"a_new": ra.NewBlobs, "removed": g.Removed, "kept": g.Kept,
				"dropped": int64(len(g.DroppedRoots)), "shared_ok": int64(len(got)), "ok": verified(t, s)}
		},
		want: figures{"a_new": 2, "removed": 1, "kept": 2, "dropped": 1, "shared_ok": 6, "ok": 1},
	},
}

// TestStoreConformance runs every case against every store: each must
// give the case's figures, so the stores agree.
func TestStoreConformance(t *testing.T) {
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) {
			for _, sc := range stores {
				t.Run(sc.name, func(t *testing.T) {
					base := t.TempDir()
					os.Chmod(base, 0o755) // the daemon must reach files by path
					s := sc.open(t, base)
					defer s.Close()
					if got := c.run(t, s, base); !maps.Equal(got, c.want) {
						t.Errorf("%v, want %v", got, c.want)
					}
				})
			}
		})
	}
}

// TestDaemonRefusesHardlinkIngest: an in-place hardlink projection needs
// direct mode (the daemon's blobs are vrift's); the refusal comes before
// anything is written.
func TestDaemonRefusesHardlinkIngest(t *testing.T) {
	base := t.TempDir()
	os.Chmod(base, 0o755)
	s := stores[1].open(t, base)
	defer s.Close()
	a := filepath.Join(base, "a")
	write(t, a, map[string]string{"package.json": "{}", "lib/x.js": "x"})
	_, err := s.Ingest(context.Background(), engine.IngestOptions{Dir: filepath.Join(a, "lib"), Method: vfs.Hardlink})
	if err == nil || !strings.Contains(err.Error(), "direct mode") {
		t.Fatalf("daemon ingest --method hardlink: %v, want a refusal naming direct mode", err)
	}
	if info, err := os.Lstat(filepath.Join(a, "lib/x.js")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("the refused ingest changed the file: %v", err)
	}
}
