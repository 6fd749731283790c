package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vrift/vrift/rpc"
)

// TestServiceConcurrentRootReads: verify and gc calls from several clients
// at once, all reading the same pinned root, must not crash the daemon.
// (LMDB forbids one process opening the same environment twice at once;
// the daemon opens each root's copy per call.)
func TestServiceConcurrentRootReads(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"p/package.json": "{}", "p/a.txt": "a\n", "p/b/c.txt": "c\n"})
	mustVrift(t, "--store", filepath.Join(dir, "direct"), "ingest", "--tier", "tier2", filepath.Join(dir, "p"))
	mpath := filepath.Join(dir, "p", ".vrift", "manifest.lmdb")
	sock := serveService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := rpc.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(mpath)
	if err != nil {
		t.Fatal(err)
	}
	var lr rpc.LinkResult
	if err := c.CallWithFiles(ctx, rpc.MethodLink, rpc.LinkParams{ManifestPath: mpath}, []*os.File{f}, &lr); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.Close()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rpc.Dial(ctx, sock)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for range 600 {
				var err error
				if w%2 == 0 {
					var vr rpc.VerifyResult
					err = c.Call(ctx, rpc.MethodVerify, nil, &vr)
				} else {
					var gr rpc.GCResult
					err = c.Call(ctx, rpc.MethodGC, rpc.GCParams{DryRun: true}, &gr)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
