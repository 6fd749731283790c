package cas

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestFullErrorSaysHowFull(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.full(fmt.Errorf("put x: write temp: %w", &os.PathError{Op: "write", Path: "t", Err: syscall.ENOSPC}))
	if !errors.Is(err, ErrStoreFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%v: not ErrStoreFull and ENOSPC", err)
	}
	want := regexp.MustCompile(`^store filesystem ` + regexp.QuoteMeta(s.Root()) + ` is full \([0-9.]+ [KMGT]?i?B free of [0-9.]+ [KMGT]?i?B\): put x: write temp: write t: no space left on device$`)
	if !want.MatchString(err.Error()) {
		t.Fatalf("message %q", err)
	}
	if other := s.full(io.ErrUnexpectedEOF); other != io.ErrUnexpectedEOF {
		t.Fatalf("other errors must pass unchanged: %v", other)
	}
	if s.full(err) != err {
		t.Fatal("wrapped twice")
	}
}

func TestCheckSpace(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	free, total, err := s.Space()
	if err != nil || total == 0 || free > total {
		t.Fatalf("space: %d free of %d, %v", free, total, err)
	}
	err = s.CheckSpace(int64(total))
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a need as large as the filesystem was accepted: %v", err)
	}
	if !regexp.MustCompile(`^store filesystem .* is too full: this needs about [0-9.]+ [KMGT]iB, it has [0-9.]+ [KMGT]?i?B free of [0-9.]+ [KMGT]iB$`).MatchString(err.Error()) {
		t.Fatalf("message %q", err)
	}
	if free > 2*SpaceMargin(total) {
		if err := s.CheckSpace(0); err != nil {
			t.Fatalf("nothing needed, yet refused: %v", err)
		}
	}
	if m := SpaceMargin(16 << 20); m != 1<<20 {
		t.Errorf("margin of 16 MiB: %d", m)
	}
	if m := SpaceMargin(1 << 40); m != 512<<20 {
		t.Errorf("margin of 1 TiB: %d", m)
	}
}

// loopFS mounts a fresh ext4 filesystem of size bytes (no reserved blocks)
// on a temp dir and returns it; it is unmounted at cleanup.
func loopFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
			t.Fatal("needs root to mount a loop filesystem, and VRIFT_REQUIRE_ROOT is set")
		}
		t.Skip("needs root to mount a loop filesystem")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	for _, c := range [][]string{{"truncate", "-s", size, img}, {"mkfs.ext4", "-q", "-m", "0", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// TestPutOnFullFilesystem: a put that runs out of space fails with a
// FullError naming the store and its figures, leaves neither a blob nor a
// temp file, and succeeds once space is freed.
func TestPutOnFullFilesystem(t *testing.T) {
	mnt := loopFS(t, "32M")
	s, err := Open(filepath.Join(mnt, "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 20<<20)
	rand.Read(data)
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	// Leave 8 MiB: the 20 MiB put fails mid-stream.
	free, _, _ := s.Space()
	fillTo(t, ballast, int64(free)-8<<20)
	for _, put := range []struct {
		name string
		put  func() (PutResult, error)
	}{
		{"store", func() (PutResult, error) { return s.Put(context.Background(), bytes.NewReader(data), false) }},
		{"batch", func() (PutResult, error) {
			b := s.NewBatch()
			defer b.Discard()
			r, err := b.Put(context.Background(), bytes.NewReader(data), false)
			if err == nil {
				err = b.Flush()
			}
			return r, err
		}},
	} {
		_, err := put.put()
		if !errors.Is(err, ErrStoreFull) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s: put on a full filesystem: %v", put.name, err)
		}
		if !strings.Contains(err.Error(), "store filesystem "+s.Root()+" is full (") {
			t.Fatalf("%s: message %q", put.name, err)
		}
		t.Logf("%s: %v", put.name, err)
		if n := countFiles(t, filepath.Join(s.Root(), tmpDir)) + countFiles(t, filepath.Join(s.Root(), HashDir)); n != 0 {
			t.Fatalf("%s: %d files left in the store after a failed put", put.name, n)
		}
	}
	os.Remove(ballast)
	r, err := s.Put(context.Background(), bytes.NewReader(data), false)
	if err != nil || !r.New {
		t.Fatalf("put after freeing space: %+v, %v", r, err)
	}
	got, err := os.ReadFile(s.Path(r.Key))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob differs after the retry: %v", err)
	}
}

// fillTo grows path to n bytes of real (allocated) data.
func fillTo(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for n > 0 {
		m := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:m]); err != nil {
			t.Fatalf("fill: %v", err)
		}
		n -= m
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestPutCheckedDiscards: content whose check fails leaves no blob and no
// temp, even after a flush; content whose check passes is stored.
func TestPutCheckedDiscards(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	changed := errors.New("source changed while read")
	for _, size := range []int{100, 3 << 20} { // small and streaming paths
		data := bytes.Repeat([]byte{'m'}, size)
		if _, err := b.PutChecked(context.Background(), bytes.NewReader(data), false, func() error { return changed }); !errors.Is(err, changed) {
			t.Fatalf("%d bytes: %v", size, err)
		}
	}
	r, err := b.PutChecked(context.Background(), strings.NewReader("kept"), false, func() error { return nil })
	if err != nil || !r.New {
		t.Fatalf("passing check: %+v %v", r, err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, filepath.Join(s.Root(), HashDir)); n != 1 {
		t.Fatalf("%d blobs, want only the checked one", n)
	}
	if n := countFiles(t, filepath.Join(s.Root(), tmpDir)); n != 0 {
		t.Fatalf("%d temps left", n)
	}
}

// TestPreflight (root): on a store filesystem with 12 MiB free, a 20 MiB
// tree is refused before anything is written, with the figures; a 2 MiB
// tree and a tree of symlinks pass.
func TestPreflight(t *testing.T) {
	mnt := loopFS(t, "32M")
	s, err := Open(filepath.Join(mnt, "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(mnt, "ballast")
	os.WriteFile(ballast, nil, 0o644)
	free, _, _ := s.Space()
	fillTo(t, ballast, int64(free)-12<<20)
	src := t.TempDir()
	for i := range 20 {
		b := make([]byte, 1<<20)
		rand.Read(b)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("big%02d", i)), b, 0o644)
	}
	err = s.Preflight(context.Background(), src)
	if !errors.Is(err, ErrStoreFull) || !regexp.MustCompile(`is too full: this needs about [0-9.]+ MiB, it has 1[0-9.]+ MiB free of`).MatchString(err.Error()) {
		t.Fatalf("20 MiB into 12 MiB free: %v", err)
	}
	t.Log(err)
	if n := countFiles(t, filepath.Join(s.Root(), tmpDir)) + countFiles(t, filepath.Join(s.Root(), HashDir)); n != 0 {
		t.Fatalf("the refused preflight wrote %d files", n)
	}
	small := t.TempDir()
	os.WriteFile(filepath.Join(small, "f"), make([]byte, 2<<20), 0o644)
	for i := range 20 {
		os.Symlink(filepath.Join(src, fmt.Sprintf("big%02d", i)), filepath.Join(small, fmt.Sprintf("l%02d", i)))
	}
	if err := s.Preflight(context.Background(), small); err != nil {
		t.Fatalf("2 MiB and symlinks into 12 MiB free: %v", err)
	}
}
