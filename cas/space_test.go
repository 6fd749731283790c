package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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
