package engine

import (
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadDirents: the walk's listing names and types every entry as
// os.ReadDir does, across several getdents calls (a small buffer), with
// odd names, and leaves out . and ..
func TestReadDirents(t *testing.T) {
	dir := t.TempDir()
	want := map[string]iofs.FileMode{}
	for i := range 300 {
		name := fmt.Sprintf("file-%03d-%s", i, "x")
		os.WriteFile(filepath.Join(dir, name), nil, 0o644)
		want[name] = 0
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	want["sub"] = iofs.ModeDir
	os.Symlink("nowhere", filepath.Join(dir, "link"))
	want["link"] = iofs.ModeSymlink
	unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644)
	want["fifo"] = iofs.ModeIrregular
	for _, odd := range []string{"...", "..x", ".h", "a\xffb", "sp ace\nnl"} {
		os.WriteFile(filepath.Join(dir, odd), nil, 0o644)
		want[odd] = 0
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ents, err := readDirents(f, make([]byte, 1024))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]iofs.FileMode{}
	for _, e := range ents {
		if _, dup := got[e.name]; dup {
			t.Errorf("%q listed twice", e.name)
		}
		got[e.name] = e.typ
	}
	if len(got) != len(want) {
		names := make([]string, 0, len(got))
		for n := range got {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Fatalf("listed %d entries, want %d: %q", len(got), len(want), names)
	}
	for n, typ := range want {
		if g, ok := got[n]; !ok || g != typ {
			t.Errorf("%q: got %v (listed %v), want %v", n, g, ok, typ)
		}
	}
}
