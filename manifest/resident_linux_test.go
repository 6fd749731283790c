package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// residentKB is how much of the manifest's data file this process has
// resident, from /proc/self/smaps.
func residentKB(t *testing.T, m *Manifest) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	ours, kb := false, 0
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) >= 5 && bytes.IndexByte(fields[0], '-') > 0 && !bytes.HasSuffix(fields[0], []byte(":")) {
			ino, _ := strconv.ParseUint(string(fields[4]), 10, 64)
			ours = ino == m.mapped.ino
			continue
		}
		if ours && len(fields) >= 2 && string(fields[0]) == "Rss:" {
			n, _ := strconv.Atoi(string(fields[1]))
			kb += n
		}
	}
	return kb
}

// TestDropResident: a commit and a long scan leave little of the manifest
// resident, and what is read after a drop is still the manifest's; reading
// it all without a drop (Get per key) leaves it resident, which shows the
// measure can tell.
func TestDropResident(t *testing.T) {
	m, err := Create(filepath.Join(t.TempDir(), "manifest.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 200000
	key := func(i int) string { return fmt.Sprintf("d%03d/file-%06d", i%500, i) }
	if err := m.Update(func(w *Writer) error {
		for i := range n {
			if err := w.Put(key(i), Entry{Kind: File, Mode: 0o644, Size: int64(i), Ino: uint64(i), Sum: [32]byte{byte(i)}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if kb := residentKB(t, m); kb > 1024 {
		t.Errorf("%d KB of the manifest resident after its commit", kb)
	}
	seen := 0
	if err := m.View(func(r *Reader) error {
		return r.Walk(RootPath, func(p string, e Entry) error {
			if e.Kind == File {
				seen++
				if key(int(e.Size)) != p || e.Ino != uint64(e.Size) || e.Sum[0] != byte(e.Size) {
					return fmt.Errorf("%s read back as %+v", p, e)
				}
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Fatalf("walk saw %d files, want %d", seen, n)
	}
	walked := residentKB(t, m)
	if err := m.View(func(r *Reader) error {
		for i := range n {
			if i%scanBatch == scanBatch-1 {
				r.DropResident()
			}
			if _, ok, err := r.Get(key(i)); err != nil || !ok {
				return fmt.Errorf("get %s: %v %v", key(i), ok, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	looked := residentKB(t, m)
	// Lookup (a FUSE view's, one entry a call) keeps what it maps, as a
	// reader's Get does.
	for i := range n {
		if _, ok, err := m.Lookup(key(i)); err != nil || !ok {
			t.Fatalf("lookup %s: %v %v", key(i), ok, err)
		}
	}
	all := residentKB(t, m)
	t.Logf("resident: %d KB after a walk, %d KB after a reader's Get of every key with a DropResident every %d, %d KB after a Lookup of every key", walked, looked, scanBatch, all)
	if all < 8192 {
		t.Errorf("only %d KB resident after reading every key: the measure cannot tell", all)
	}
	if walked*2 > all {
		t.Errorf("%d KB of the manifest resident after a walk (%d KB when it is all read)", walked, all)
	}
	if looked*2 > all {
		t.Errorf("%d KB of the manifest resident after a reader's Get of every key, dropping as it went (%d KB when it is all read)", looked, all)
	}
}
