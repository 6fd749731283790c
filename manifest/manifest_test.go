package manifest

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

func TestRoundTripWalkOrderAndOddNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), DirName, FileName)
	m, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	odd := "a/\xff\xfe-not-utf8\nnewline"
	entries := map[string]Entry{
		"a":       {Kind: Dir, Mode: 0o755, MTime: 1},
		"a/b":     {Kind: Dir, Mode: 0o555, MTime: 2},
		"a/b/x":   {Kind: File, Mode: 0o755, MTime: 3, Size: 5, Ino: 7, CTime: 9},
		"a-b":     {Kind: File, Mode: 0o644, MTime: 4, Size: 1},
		"a/b.js":  {Kind: Symlink, Mode: 0o777, Target: []byte("b/x\x00?")[:4]},
		odd:       {Kind: File, Mode: 0o600, Size: 0},
		"a/b/y/z": {Kind: Symlink, Target: []byte("../../..")},
	}
	entries["a/b/x"] = Entry{Kind: File, Mode: 0o755, MTime: 3, Size: 5, Ino: 7, CTime: 9, Sum: [32]byte{1, 2, 3}}
	err = m.Update(func(w *Writer) error {
		for p, e := range entries {
			if err := w.Put(p, e); err != nil {
				return err
			}
		}
		return w.SetMeta(Meta{Root: "/r", Subtrees: []string{"a"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()

	m, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var order []string
	err = m.View(func(r *Reader) error {
		meta, err := r.Meta()
		if err != nil || meta.Version != FormatVersion || meta.Root != "/r" {
			t.Fatalf("meta %+v %v", meta, err)
		}
		return r.Walk("a", func(p string, e Entry) error {
			order = append(order, p)
			want := entries[p]
			if e.Kind != want.Kind || e.Mode != want.Mode || e.MTime != want.MTime || e.Size != want.Size ||
				e.Sum != want.Sum || e.Ino != want.Ino || e.CTime != want.CTime || string(e.Target) != string(want.Target) {
				t.Errorf("%q: got %+v, want %+v", p, e, want)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The subtree "a" excludes its sibling "a-b"; parents precede children.
	want := []string{"a", odd, "a/b", "a/b.js", "a/b/x", "a/b/y/z"}
	slices.Sort(want[1:])
	if !slices.Equal(order, want) {
		t.Fatalf("walk order %q, want %q", order, want)
	}
}

func TestPutIfChangedAndDeleteUnseen(t *testing.T) {
	m, err := Create(filepath.Join(t.TempDir(), "m.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := Entry{Kind: Dir, Mode: 0o755}
	m.Update(func(w *Writer) error {
		for _, p := range []string{"nm", "nm/a", "nm/b", "src"} {
			w.Put(p, e)
		}
		return nil
	})
	err = m.Update(func(w *Writer) error {
		if wrote, _ := w.PutIfChanged("nm/a", e); wrote {
			t.Error("identical entry rewritten")
		}
		if wrote, _ := w.PutIfChanged("nm/a", Entry{Kind: Dir, Mode: 0o700}); !wrote {
			t.Error("changed entry not written")
		}
		n, err := w.DeleteUnseen("nm", func(p []byte) bool { return string(p) != "nm/b" })
		if n != 1 {
			t.Errorf("deleted %d, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m.View(func(r *Reader) error {
		if _, ok, _ := r.Get("nm/b"); ok {
			t.Error("nm/b survived")
		}
		if _, ok, _ := r.Get("src"); !ok {
			t.Error("src, outside the subtree, was deleted")
		}
		return nil
	})
}

func TestCheckPath(t *testing.T) {
	for _, ok := range []string{".", "a", "a/b", "..a", "a/.b", "a b/\xff"} {
		if err := CheckPath(ok); err != nil {
			t.Errorf("CheckPath(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/etc", "..", "../x", "a/../b", "a/./b", "a//b", "a/", "./a", "a\x00b"} {
		if err := CheckPath(bad); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("CheckPath(%q) = %v, want ErrUnsafePath", bad, err)
		}
	}
}

func TestOpenRejectsNonManifest(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.lmdb")); err == nil {
		t.Fatal("opened a missing manifest")
	}
}

func TestChildren(t *testing.T) {
	m, err := Create(filepath.Join(t.TempDir(), "m.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := Entry{Kind: Dir, Mode: 0o755}
	file := Entry{Kind: File, Mode: 0o644}
	m.Update(func(w *Writer) error {
		for _, p := range []string{"a", "a/b", "a/b/deep", "a/b/deep/er", "a-b", "a/b-c", "a/b.js", "a/c", "a/c/x", "a/z", "b"} {
			e := file
			if p == "a" || p == "a/b" || p == "a/b/deep" || p == "a/c" {
				e = dir
			}
			w.Put(p, e)
		}
		return nil
	})
	list := func(d string) []string {
		var out []string
		m.View(func(r *Reader) error {
			return r.Children(d, func(name string, _ Entry) error { out = append(out, name); return nil })
		})
		return out
	}
	if got, want := list("a"), []string{"b", "b-c", "b.js", "c", "z"}; !slices.Equal(got, want) {
		t.Errorf("children of a: %q, want %q", got, want)
	}
	if got, want := list("."), []string{"a", "a-b", "b"}; !slices.Equal(got, want) {
		t.Errorf("children of the root: %q, want %q", got, want)
	}
	if got := list("a/b/deep/er"); len(got) != 0 {
		t.Errorf("children of a file: %q", got)
	}
}

// TestLookupSeesEachCommit: Lookup's parked transactions are renewed, so a
// Lookup after a commit sees it (they hold back no snapshot), Version
// changes with every commit, and parallel Lookups are safe.
func TestLookupSeesEachCommit(t *testing.T) {
	m, err := Create(filepath.Join(t.TempDir(), "m.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v0, _ := m.Version()
	if _, ok, err := m.Lookup("a"); ok || err != nil {
		t.Fatalf("lookup in an empty manifest: %v %v", ok, err)
	}
	for i := 1; i <= 3; i++ {
		if err := m.Update(func(w *Writer) error { return w.Put("a", Entry{Kind: Dir, Mode: uint32(i)}) }); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, ok, err := m.Lookup("a")
				if !ok || err != nil || e.Mode != uint32(i) {
					t.Errorf("lookup after commit %d: %+v %v %v", i, e, ok, err)
				}
			}()
		}
		wg.Wait()
		if v, _ := m.Version(); v <= v0 {
			t.Errorf("version %d after commit %d, was %d", v, i, v0)
		} else {
			v0 = v
		}
	}
}

// BenchmarkLookup against BenchmarkViewGet: what parking read
// transactions saves per FUSE LOOKUP.
func BenchmarkLookup(b *testing.B) {
	m := benchManifest(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok, err := m.Lookup(benchKey(i)); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkViewGet(b *testing.B) {
	m := benchManifest(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		err := m.View(func(r *Reader) error {
			_, ok, err := r.Get(benchKey(i))
			if !ok {
				b.Fatal("missing")
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchKey(i int) string { return fmt.Sprintf("node_modules/p%d/index.js", i%10000) }

func benchManifest(b *testing.B) *Manifest {
	m, err := Create(filepath.Join(b.TempDir(), "m.lmdb"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	err = m.Update(func(w *Writer) error {
		for i := range 10000 {
			if err := w.Put(benchKey(i), Entry{Kind: File, Mode: 0o644, Size: int64(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// TestCount: distinct contents counted once, with their size once.
func TestCount(t *testing.T) {
	m, err := Create(filepath.Join(t.TempDir(), "m.lmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	file := func(b byte, size int64) Entry {
		e := Entry{Kind: File, Mode: 0o644, Size: size}
		e.Sum[0] = b
		return e
	}
	err = m.Update(func(w *Writer) error {
		for p, e := range map[string]Entry{"d": {Kind: Dir}, "d/a": file(1, 10), "d/b": file(2, 20), "d/c": file(1, 10),
			"e": {Kind: Dir}, "e/l": {Kind: Symlink}, "e/x": file(3, 0), "e/y": file(2, 20)} {
			if err := w.Put(p, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got Totals
	if err := m.View(func(r *Reader) (err error) { got, err = r.Count(); return err }); err != nil {
		t.Fatal(err)
	}
	want := Totals{Files: 5, Bytes: 60, Unique: 3, UniqueBytes: 30, Dirs: 2, Symlinks: 1}
	if got != want {
		t.Fatalf("count %+v, want %+v", got, want)
	}
}
