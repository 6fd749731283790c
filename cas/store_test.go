package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutLayoutDedupAndExecVariant(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	data := []byte("hello, store\n")
	r1, err := s.Put(ctx, bytes.NewReader(data), false)
	if err != nil || !r1.New {
		t.Fatalf("first put: %+v %v", r1, err)
	}
	want := filepath.Join(s.Root(), "blake3", r1.Key.Hex()[:2], r1.Key.Hex()[2:4], r1.Key.Hex()+"_13.bin")
	if s.Path(r1.Key) != want {
		t.Fatalf("path %s, want %s", s.Path(r1.Key), want)
	}
	info, err := os.Stat(want)
	if err != nil || info.Mode().Perm() != 0o444 {
		t.Fatalf("blob mode %v, %v", info.Mode(), err)
	}
	r2, err := s.Put(ctx, bytes.NewReader(data), false)
	if err != nil || r2.New || r2.Key != r1.Key {
		t.Fatalf("second put not deduplicated: %+v %v", r2, err)
	}
	rx, err := s.Put(ctx, bytes.NewReader(data), true)
	if err != nil || !rx.New || rx.Key.Sum != r1.Key.Sum || !strings.HasSuffix(s.Path(rx.Key), "_13_x.bin") {
		t.Fatalf("exec variant: %+v %v", rx, err)
	}
	if info, _ := os.Stat(s.Path(rx.Key)); info.Mode().Perm() != 0o555 {
		t.Fatalf("exec blob mode %v", info.Mode())
	}
	if err := s.Check(ctx, r1.Key); err != nil {
		t.Fatal(err)
	}
}

func TestPutLargeStreamsAndStaysSparse(t *testing.T) {
	s := openTestStore(t)
	// 8 MiB: a little data, a large run of zeros, a little data.
	size := int64(8 << 20)
	r := io.MultiReader(strings.NewReader("head"), io.LimitReader(zeros{}, size-8), strings.NewReader("tail"))
	res, err := s.Put(context.Background(), r, false)
	if err != nil || res.Key.Size != size {
		t.Fatalf("put: %+v %v", res, err)
	}
	var blob Blob
	s.Walk(context.Background(), func(b Blob) error { blob = b; return nil })
	if blob.DiskBytes > 1<<20 {
		t.Fatalf("8 MiB mostly-zero blob uses %d bytes on disk: not sparse", blob.DiskBytes)
	}
	if err := s.Check(context.Background(), res.Key); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(s.Path(res.Key))
	if string(got[:4]) != "head" || string(got[len(got)-4:]) != "tail" || int64(len(got)) != size {
		t.Fatal("content differs")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestConcurrentPutsOfSameContent(t *testing.T) {
	s := openTestStore(t)
	data := bytes.Repeat([]byte("x"), 3<<20) // large path: temp file, then rename
	var wg sync.WaitGroup
	var mu sync.Mutex
	news := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Put(context.Background(), bytes.NewReader(data), false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if r.New {
				news++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if news != 1 {
		t.Fatalf("%d puts claimed to add the blob, want exactly 1", news)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir)); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

func TestFailedPutLeavesNothing(t *testing.T) {
	s := openTestStore(t)
	for _, n := range []int{10, 3 << 20} {
		if _, err := s.Put(context.Background(), &failingReader{n: n}, false); err == nil {
			t.Fatal("put of a failing reader succeeded")
		}
	}
	count := 0
	s.Walk(context.Background(), func(Blob) error { count++; return nil })
	left, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir))
	if count != 0 || len(left) != 0 {
		t.Fatalf("failed puts left %d blobs and %d temp files", count, len(left))
	}
}

func TestCleanTempsOfDeadWriters(t *testing.T) {
	s := openTestStore(t)
	dir := filepath.Join(s.Root(), tmpDir)
	// pid 2^22+1 is above the default pid_max: no such process.
	dead := filepath.Join(dir, "put-4194305-123")
	mine := filepath.Join(dir, fmt.Sprintf("put-%d-456", os.Getpid()))
	for _, p := range []string{dead, mine} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.CleanTemps(time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("removed %d (%v), want 1", n, err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("dead writer's temp kept")
	}
	if _, err := os.Stat(mine); err != nil {
		t.Error("live writer's temp removed")
	}
}

// TestCleanTempsGivesAdoptedFilesBack: an adopting writer killed before
// its batch published leaves the user's file read-only, linked from a temp
// name that records its mode; the clean-up gives the mode back.
func TestCleanTempsGivesAdoptedFilesBack(t *testing.T) {
	s := openTestStore(t)
	user := filepath.Join(t.TempDir(), "index.js")
	if err := os.WriteFile(user, []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(s.Root(), tmpDir, "put-4194305-"+adoptTag+"7-640")
	if err := os.Link(user, tmp); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CleanTemps(time.Hour); err != nil || n != 1 {
		t.Fatalf("removed %d (%v), want 1", n, err)
	}
	info, err := os.Stat(user)
	if err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("user's file: %v %v, want mode 0640 back", info.Mode(), err)
	}
}

func TestCheckAndQuarantine(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	r, _ := s.Put(ctx, strings.NewReader("precious"), false)
	p := s.Path(r.Key)
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("tampered"), 0o644)
	os.Chmod(p, 0o444)
	if err := s.Check(ctx, r.Key); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check of a tampered blob: %v", err)
	}
	if _, err := s.Quarantine(r.Key); err != nil {
		t.Fatal(err)
	}
	if s.Has(r.Key) {
		t.Fatal("quarantined blob still in place")
	}
	again, err := s.Put(ctx, strings.NewReader("precious"), false)
	if err != nil || !again.New || s.Check(ctx, r.Key) != nil {
		t.Fatalf("re-put after quarantine: %+v %v", again, err)
	}
}

func TestParseName(t *testing.T) {
	k := Key{Size: 42, Exec: true}
	k.Sum[0], k.Sum[31] = 0xab, 0xcd
	got, err := ParseName(k.Name())
	if err != nil || got != k {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "x.bin", k.Hex() + ".bin", k.Hex() + "_-1.bin", k.Hex() + "_01.bin",
		strings.ToUpper(k.Hex()) + "_1.bin", k.Hex()[2:] + "_1.bin", k.Hex() + "_1.tmp"} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

func TestBatchCountsEachContentOnceAcrossFlushes(t *testing.T) {
	s := openTestStore(t)
	b := s.NewBatch()
	ctx := context.Background()
	var mu sync.Mutex
	news := map[Key]int{}
	var wg sync.WaitGroup
	// 8 goroutines put the same 3000 contents (more than one batch), so
	// puts race with flushes.
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				r, err := b.Put(ctx, strings.NewReader(fmt.Sprint("content ", i)), false)
				if err != nil {
					t.Error(err)
					return
				}
				if r.New {
					mu.Lock()
					news[r.Key]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(news) != 3000 {
		t.Fatalf("%d contents reported new, want 3000", len(news))
	}
	for k, n := range news {
		if n != 1 {
			t.Fatalf("%s reported new %d times", k, n)
		}
		if err := s.Check(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir)); len(left) != 0 {
		t.Fatalf("%d temp files left", len(left))
	}
}

// TestBlobModesUnderUmask: a temp file is created with its blob's final
// mode, so under a umask that strips bits of it (0o077: the daemon's
// UMask= could be that) the store still chmods (0o777 would also strip
// the owner's bits of the test's own directories); under the usual 0o022 it
// need not. Either way every blob ends 0444 or 0555, through Put, a batch
// and a download (PutFetched), small and streamed.
func TestBlobModesUnderUmask(t *testing.T) {
	for _, mask := range []int{0o022, 0o077} {
		t.Run(fmt.Sprintf("umask %#o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			s := openTestStore(t)
			ctx := context.Background()
			check := func(k Key) {
				t.Helper()
				info, err := os.Stat(s.Path(k))
				if err != nil || info.Mode().Perm() != fs.FileMode(k.Mode()) {
					t.Fatalf("blob %s: mode %v (%v), want %o", k, info.Mode(), err, k.Mode())
				}
			}
			big := bytes.Repeat([]byte("streamed "), smallBlob/8)
			for i, exec := range []bool{false, true} {
				data := []byte(fmt.Sprintf("mode %d %#o", i, mask))
				r, err := s.Put(ctx, bytes.NewReader(data), exec)
				if err != nil {
					t.Fatal(err)
				}
				check(r.Key)
				b := s.NewBatch()
				rb, err := b.Put(ctx, bytes.NewReader(append(data, 'b')), exec)
				if err != nil {
					t.Fatal(err)
				}
				content := append(big, data...)
				h := NewHasher()
				h.Write(content)
				want := Key{Size: int64(len(content)), Exec: exec}
				h.Sum(want.Sum[:0])
				if _, err := b.PutFetched(ctx, bytes.NewReader(content), want); err != nil {
					t.Fatal(err)
				}
				if err := b.Flush(); err != nil {
					t.Fatal(err)
				}
				check(rb.Key)
				check(want)
			}
		})
	}
}
