package cas_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/internal/testenv"
)

// These tests need a small filesystem of their own (testenv.LoopFS: root).
// They are an external test package so that they can use testenv, which
// imports packages that import cas.

// TestPutOnFullFilesystem: a put that runs out of space fails with a
// FullError naming the store and its figures, leaves neither a blob nor a
// temp file, and succeeds once space is freed.
func TestPutOnFullFilesystem(t *testing.T) {
	mnt := testenv.LoopFS(t, "32M")
	s, err := cas.Open(filepath.Join(mnt, "store"), cas.Options{})
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
	testenv.Fill(t, ballast, int64(free)-8<<20)
	for _, put := range []struct {
		name string
		put  func() (cas.PutResult, error)
	}{
		{"store", func() (cas.PutResult, error) { return s.Put(context.Background(), bytes.NewReader(data), false) }},
		{"batch", func() (cas.PutResult, error) {
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
		if !errors.Is(err, cas.ErrStoreFull) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s: put on a full filesystem: %v", put.name, err)
		}
		if !strings.Contains(err.Error(), "store filesystem "+s.Root()+" is full (") {
			t.Fatalf("%s: message %q", put.name, err)
		}
		t.Logf("%s: %v", put.name, err)
		if n := cas.CountFiles(t, filepath.Join(s.Root(), cas.TmpDir)) + cas.CountFiles(t, filepath.Join(s.Root(), cas.HashDir)); n != 0 {
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

// TestPreflight (root): on a store filesystem with 12 MiB free, a 20 MiB
// tree is refused before anything is written, with the figures; a 2 MiB
// tree and a tree of symlinks pass.
func TestPreflight(t *testing.T) {
	mnt := testenv.LoopFS(t, "32M")
	s, err := cas.Open(filepath.Join(mnt, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(mnt, "ballast")
	os.WriteFile(ballast, nil, 0o644)
	free, _, _ := s.Space()
	testenv.Fill(t, ballast, int64(free)-12<<20)
	src := t.TempDir()
	for i := range 20 {
		b := make([]byte, 1<<20)
		rand.Read(b)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("big%02d", i)), b, 0o644)
	}
	err = s.Preflight(context.Background(), src)
	if !errors.Is(err, cas.ErrStoreFull) || !regexp.MustCompile(`is too full: this needs about [0-9.]+ MiB, it has 1[0-9.]+ MiB free of`).MatchString(err.Error()) {
		t.Fatalf("20 MiB into 12 MiB free: %v", err)
	}
	t.Log(err)
	if n := cas.CountFiles(t, filepath.Join(s.Root(), cas.TmpDir)) + cas.CountFiles(t, filepath.Join(s.Root(), cas.HashDir)); n != 0 {
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
