package engine_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/rpc"
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
		svc, err := service.New(service.Config{Store: filepath.Join(base, "store"), State: filepath.Join(base, "state"),
			Version: "test", Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(base, "d.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv := &rpc.Server{Handler: svc, Log: slog.New(slog.DiscardHandler), ShutdownTimeout: time.Second}
		done := make(chan struct{})
		go func() { srv.Serve(ctx, l); close(done) }()
		s, err := engine.Open(context.Background(), sock, false, "")
		if err != nil || s.Mode() != "daemon" {
			t.Fatalf("connect: %v, mode %v", err, s)
		}
		t.Cleanup(func() { cancel(); <-done; svc.Close() })
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

// summary is what must agree between stores.
type summary struct {
	Files, Bytes, Unique, NewBlobs, Dirs, Symlinks int64
	Created                                        int64
	Roots                                          int
	Removed, Kept                                  int64
	Dropped                                        int
	OK                                             bool
}

func runConformance(t *testing.T, sc storeCase) summary {
	base := t.TempDir()
	os.Chmod(base, 0o755) // the daemon must reach files by path
	s := sc.open(t, base)
	defer s.Close()
	ctx := context.Background()
	var sum summary

	a := filepath.Join(base, "a")
	write(t, a, map[string]string{"package.json": "{}", "node_modules/x/index.js": "x", "node_modules/y/index.js": "x",
		"node_modules/z/lib/z.js": "zz"})
	os.Symlink("x/index.js", filepath.Join(a, "node_modules/link"))
	res, err := s.Ingest(ctx, engine.IngestOptions{Dir: filepath.Join(a, "node_modules"), Tier: engine.Tier2})
	if err != nil {
		t.Fatal(err)
	}
	sum.Files, sum.Bytes, sum.Unique, sum.NewBlobs, sum.Dirs, sum.Symlinks = res.Files, res.Bytes, res.Unique, res.NewBlobs, res.Dirs, res.Symlinks

	out := filepath.Join(base, "out")
	lr, err := engine.Link(ctx, s, engine.LinkOptions{Project: a, To: out, Method: vfs.Copy})
	if err != nil {
		t.Fatal(err)
	}
	sum.Created = lr.Created
	for _, p := range []string{"node_modules/x/index.js", "node_modules/z/lib/z.js"} {
		want, _ := os.ReadFile(filepath.Join(a, p))
		got, _ := os.ReadFile(filepath.Join(out, p))
		if !bytes.Equal(want, got) {
			t.Errorf("%s: linked copy differs", p)
		}
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum.Roots = st.Roots

	// The project goes; gc drops its root and sweeps its blobs.
	os.RemoveAll(a)
	gc, err := s.GC(ctx, engine.GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	sum.Removed, sum.Kept, sum.Dropped = gc.Removed, gc.Kept, len(gc.DroppedRoots)
	v, err := s.Verify(ctx, engine.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum.OK = v.OK()
	return sum
}

func TestStoreConformance(t *testing.T) {
	var got []summary
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) { got = append(got, runConformance(t, sc)) })
	}
	if len(got) != 2 {
		t.Fatal("a store did not run")
	}
	if got[0] != got[1] {
		t.Errorf("stores disagree:\n direct %+v\n daemon %+v", got[0], got[1])
	}
	want := summary{Files: 3, Bytes: 4, Unique: 2, NewBlobs: 2, Dirs: 5, Symlinks: 1, Created: 9, Roots: 1, Removed: 2, Kept: 0, Dropped: 1, OK: true}
	if got[0] != want {
		t.Errorf("direct store: %+v, want %+v", got[0], want)
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
