// Package testenv holds the test helpers several packages need: the root
// check every privileged test makes, loop filesystems, and the real daemon
// service served in-process on a real socket. Tests only: nothing outside
// a _test.go file imports it.
package testenv

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

// RequireRoot skips t unless it runs as root; why says what root is for.
// Under VRIFT_REQUIRE_ROOT (CI) a skip would hide untested behaviour, so
// it fails instead. -short (make test-quick) skips even as root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skips the tests that need root")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
		t.Fatalf("this test needs root (%s), and VRIFT_REQUIRE_ROOT is set", why)
	}
	t.Skipf("needs root (%s); CI runs it as root", why)
}

// LoopFS mounts a fresh ext4 filesystem of size (truncate's syntax, e.g.
// "64M"), with no reserved blocks, on a temp dir and returns the mount
// point; it is unmounted at cleanup. extra goes to mkfs.ext4. It needs
// root (RequireRoot).
func LoopFS(t testing.TB, size string, extra ...string) string {
	t.Helper()
	RequireRoot(t, "to mount a loop filesystem")
	return LoopFSIn(t, t.TempDir(), size, extra...)
}

// LoopFSIn is LoopFS with the image and the mount point in dir (one other
// users can reach, for a daemon's store).
func LoopFSIn(t testing.TB, dir, size string, extra ...string) string {
	t.Helper()
	RequireRoot(t, "to mount a loop filesystem")
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mkfs := append([]string{"mkfs.ext4", "-q", "-m", "0"}, extra...)
	for _, c := range [][]string{{"truncate", "-s", size, img}, append(mkfs, img), {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		// A daemon still stopping may hold the store (its lock file)
		// open: detach lazily then; the loop device goes with its last
		// user.
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("umount", "-l", mnt).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v\n%s%s", mnt, err, out, out2)
			}
		}
	})
	return mnt
}

// Fill writes a ballast file at path of n bytes of real (allocated) data,
// synced: it takes n bytes of its filesystem's free space.
func Fill(t testing.TB, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
	for n > 0 {
		m := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:m]); err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
		n -= m
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// ServeDaemon runs the real daemon service in-process behind a real
// rpc.Server on a real unix socket, until the test ends, and returns the
// socket's path. cfg's Store and State default to directories of a fresh
// temp dir, its Log to none; every caller is who the socket says.
func ServeDaemon(t testing.TB, cfg service.Config) string {
	t.Helper()
	dir := t.TempDir()
	if cfg.Store == "" {
		cfg.Store = filepath.Join(dir, "store")
	}
	if cfg.State == "" {
		cfg.State = filepath.Join(dir, "state")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Version == "" {
		cfg.Version = "test"
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "d.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		svc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&rpc.Server{Handler: svc, Log: cfg.Log, ShutdownTimeout: time.Second}).Serve(ctx, l)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done; svc.Close() })
	return sock
}
