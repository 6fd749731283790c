package fs

import (
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestNoOpendir: where the kernel offers zero-message opendir, OPENDIR is
// refused with ENOSYS (the kernel then stops sending it), and READDIRPLUS
// without a handle lists the directory from any offset, to its end.
func TestNoOpendir(t *testing.T) {
	f := newViewFixture(t)
	raw := &noOpendir{RawFileSystem: f.raw, kernelFlags: fuse.CAP_NO_OPENDIR_SUPPORT}
	var oo fuse.OpenOut
	if st := raw.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 1}}, &oo); st != fuse.ENOSYS {
		t.Fatalf("opendir where the kernel offers no-opendir: %v, want ENOSYS", st)
	}
	list := func(off uint64, plus bool) []dirent {
		buf := make([]byte, 4096)
		l := fuse.NewDirEntryList(buf, off)
		in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: 1}, Offset: off, Size: 4096}
		var st fuse.Status
		if plus {
			st = raw.ReadDirPlus(nil, in, l)
		} else {
			st = raw.ReadDir(nil, in, l)
		}
		if !st.Ok() {
			t.Fatalf("readdir at %d without a handle: %v", off, st)
		}
		return parseDirents(l.Bytes(), plus)
	}
	for _, plus := range []bool{true, false} {
		all := list(0, plus)
		var names []string
		for _, d := range all {
			names = append(names, d.name)
		}
		if !equalStrings(names, []string{"a.txt", "link", "run.sh", "sub"}) {
			t.Fatalf("plus=%v: listing without a handle: %v", plus, names)
		}
		if rest := list(all[1].off, plus); len(rest) != 2 || rest[0].name != "run.sh" {
			t.Errorf("plus=%v: listing from offset %d: %v, want run.sh, sub", plus, all[1].off, rest)
		}
		if end := list(all[3].off, plus); len(end) != 0 {
			t.Errorf("plus=%v: listing at the end: %v, want nothing", plus, end)
		}
	}
	// READDIRPLUS without a handle registered the children as with one.
	if kids := f.root.EmbeddedInode().Children(); len(kids) != 4 || kids["sub"].StableAttr().Mode != syscall.S_IFDIR {
		t.Errorf("children after readdirplus without a handle: %v", kids)
	}
	// A kernel without it gets real directory handles.
	old := &noOpendir{RawFileSystem: f.raw}
	if st := old.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 1}}, &oo); !st.Ok() || oo.OpenFlags&fuse.FOPEN_CACHE_DIR == 0 {
		t.Errorf("opendir where the kernel lacks no-opendir: %v flags %#x", st, oo.OpenFlags)
	}
}
