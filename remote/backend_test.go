package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/vrift/vrift/internal/s3test"
	"github.com/vrift/vrift/remote"
)

// The backend suite: one set of cases every Backend passes, run against the
// in-memory backend and against a real S3 server (versitygw), as restic
// tests its backends.

func TestMemoryBackend(t *testing.T) { backendSuite(t, remote.NewMemory("test")) }

func TestS3Backend(t *testing.T) {
	srv := s3test.Start(t, "suite")
	srv.SetEnv(t)
	b, err := remote.OpenS3(remote.Config{URL: "s3://suite/prefix", Endpoint: srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	backendSuite(t, b)
}

// TestS3IgnoredRange: a server (here a proxy in front of a real one) that
// answers a range read with a 200 and no Content-Range is refused, not
// taken for the range.
func TestS3IgnoredRange(t *testing.T) {
	srv := s3test.Start(t, "suite")
	srv.SetEnv(t)
	b, err := remote.OpenS3(remote.Config{URL: "s3://suite/prefix", Endpoint: s3test.IgnoreRange(t, srv.Endpoint())})
	if err != nil {
		t.Fatal(err)
	}
	put(t, b, "packs/r", "0123456789")
	if got, err := get(t, b, "packs/r"); err != nil || got != "0123456789" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}
	if _, err := b.GetRange(context.Background(), "packs/r", 2, 3); !errors.Is(err, remote.ErrRange) {
		t.Fatalf("an ignored Range: %v, want ErrRange", err)
	}
}

func get(t *testing.T, b remote.Backend, key string) (string, error) {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

func put(t *testing.T, b remote.Backend, key, content string) {
	t.Helper()
	if err := b.Put(context.Background(), key, strings.NewReader(content), int64(len(content))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func keys(t *testing.T, b remote.Backend, prefix string) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), prefix, func(o remote.ObjectInfo) error {
		out = append(out, fmt.Sprintf("%s:%d", o.Key, o.Size))
		return nil
	}); err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	return out
}

func backendSuite(t *testing.T, b remote.Backend) {
	ctx := context.Background()
	t.Run("missing", func(t *testing.T) {
		if _, err := b.Stat(ctx, "nope/x"); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("stat of a missing object: %v", err)
		}
		if _, err := get(t, b, "nope/x"); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("get of a missing object: %v", err)
		}
		if err := b.Delete(ctx, "nope/x"); err != nil {
			t.Errorf("delete of a missing object: %v", err)
		}
	})
	t.Run("put get stat overwrite delete", func(t *testing.T) {
		put(t, b, "blobs/ab/one", "first")
		if got, err := get(t, b, "blobs/ab/one"); err != nil || got != "first" {
			t.Fatalf("get: %q %v", got, err)
		}
		info, err := b.Stat(ctx, "blobs/ab/one")
		if err != nil || info.Key != "blobs/ab/one" || info.Size != 5 || info.LastModified.IsZero() {
			t.Fatalf("stat: %+v %v", info, err)
		}
		put(t, b, "blobs/ab/one", "second!")
		if got, _ := get(t, b, "blobs/ab/one"); got != "second!" {
			t.Fatalf("after overwrite: %q", got)
		}
		put(t, b, "blobs/ab/empty", "")
		if info, err := b.Stat(ctx, "blobs/ab/empty"); err != nil || info.Size != 0 {
			t.Fatalf("empty object: %+v %v", info, err)
		}
		for _, k := range []string{"blobs/ab/one", "blobs/ab/empty"} {
			if err := b.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Stat(ctx, k); !errors.Is(err, remote.ErrNotFound) {
				t.Fatalf("%s after delete: %v", k, err)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"trees/b", "trees/a", "trees/sub/c", "blobs/x", "treesx"} {
			put(t, b, k, k)
		}
		if got, want := strings.Join(keys(t, b, "trees/"), " "), "trees/a:7 trees/b:7 trees/sub/c:11"; got != want {
			t.Errorf("list trees/: %s, want %s", got, want)
		}
		if got := keys(t, b, "none/"); len(got) != 0 {
			t.Errorf("list of an empty prefix: %v", got)
		}
		stop := errors.New("stop")
		n := 0
		if err := b.List(ctx, "trees/", func(remote.ObjectInfo) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("list stops at fn's error: %v after %d", err, n)
		}
		for _, k := range []string{"trees/b", "trees/a", "trees/sub/c", "blobs/x", "treesx"} {
			b.Delete(ctx, k)
		}
	})
	t.Run("range", func(t *testing.T) {
		put(t, b, "packs/r", "0123456789")
		read := func(off, n int64) (string, error) {
			rc, err := b.GetRange(ctx, "packs/r", off, n)
			if err != nil {
				return "", err
			}
			defer rc.Close()
			data, err := io.ReadAll(rc)
			return string(data), err
		}
		for _, c := range []struct {
			off, n int64
			want   string
		}{{0, 1, "0"}, {3, 4, "3456"}, {8, 10, "89"}} {
			if got, err := read(c.off, c.n); err != nil || got != c.want {
				t.Errorf("range %d+%d: %q %v, want %q", c.off, c.n, got, err, c.want)
			}
		}
		if _, err := read(10, 5); !errors.Is(err, remote.ErrRange) {
			t.Errorf("a range past the end: %v, want ErrRange", err)
		}
		if _, err := b.GetRange(ctx, "packs/none", 0, 5); !errors.Is(err, remote.ErrNotFound) {
			t.Errorf("a range of a missing object: %v", err)
		}
		b.Delete(ctx, "packs/r")
	})
	t.Run("a failed put stores nothing", func(t *testing.T) {
		// The reader fails mid-way: the object must not appear, whole or
		// partial.
		r := io.MultiReader(strings.NewReader("half"), iotest.ErrReader(errors.New("disk gone")))
		if err := b.Put(ctx, "blobs/broken", r, 8); err == nil {
			t.Fatal("a put whose reader failed succeeded")
		}
		if _, err := b.Stat(ctx, "blobs/broken"); !errors.Is(err, remote.ErrNotFound) {
			t.Fatalf("a failed put left an object: %v", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, c := fmt.Sprintf("conc/%02d", i), strings.Repeat(fmt.Sprint(i%10), 1000+i)
				if err := b.Put(ctx, k, bytes.NewReader([]byte(c)), int64(len(c))); err != nil {
					t.Error(err)
					return
				}
				if got, err := get(t, b, k); err != nil || got != c {
					t.Errorf("%s: %d bytes, %v", k, len(got), err)
				}
			}()
		}
		wg.Wait()
		if got := keys(t, b, "conc/"); len(got) != 16 {
			t.Errorf("%d objects listed, want 16", len(got))
		}
	})
	if !strings.Contains(b.String(), "://") {
		t.Errorf("String() = %q: not a remote's name", b.String())
	}
}
