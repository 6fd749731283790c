package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/internal/testenv"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

// TestServiceConcurrentRootReads: verify and gc calls from several clients
// at once, all reading the same pinned root, must not crash the daemon.
// (LMDB forbids one process opening the same environment twice at once;
// the daemon opens each root's copy per call.)
func TestServiceConcurrentRootReads(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	mpath := filepath.Join(dir, "p", ".vrift", "manifest.lmdb")
	os.MkdirAll(filepath.Dir(mpath), 0o755)
	m, err := manifest.Create(mpath)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Update(func(w *manifest.Writer) error {
		if err := w.Put(manifest.RootPath, manifest.Entry{Kind: manifest.Dir, Mode: 0o755}); err != nil {
			return err
		}
		for i := range 3 {
			if err := w.Put(fmt.Sprintf("f%d.txt", i), manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: int64(i + 1)}); err != nil {
				return err
			}
		}
		return nil
	})
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	sock := testenv.ServeDaemon(t, service.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
			for range 150 {
				var err error
				if w%2 == 0 {
					var vr rpc.VerifyResult
					err = c.Call(ctx, rpc.MethodVerify, nil, &vr)
				} else {
					var gr rpc.GCResult
					err = c.Call(ctx, rpc.MethodGC, rpc.GCParams{DryRun: true}, &gr)
				}
				// One gc and one full verify run at a time: the others
				// are told to retry, which is an answer, not a crash.
				if err != nil && !errors.Is(err, errdefs.ErrBusy) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
