package tree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenDirRefusesSymlinksAndEscapes(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	os.Symlink(outside, filepath.Join(root, "a/link"))
	os.Symlink("..", filepath.Join(root, "a/b/up"))
	tr, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	fd, err := tr.OpenDir("a/b")
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	for _, rel := range []string{"a/link", "a/link/x", "a/b/up", "../" + filepath.Base(outside), "/etc", "a/../.."} {
		if fd, err := tr.OpenDir(rel); err == nil {
			unix.Close(fd)
			t.Errorf("OpenDir(%q) succeeded; want a refusal", rel)
		}
	}
	if _, err := tr.OpenFile("a/link", unix.O_RDONLY); !errors.Is(err, unix.ELOOP) {
		t.Errorf("OpenFile through a symlink: %v, want ELOOP", err)
	}
}

func TestReplaceAndTempNames(t *testing.T) {
	root := t.TempDir()
	tr, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	long := strings.Repeat("n", NameMax)
	for _, name := range []string{"short", long, long[:NameMax-3]} {
		os.WriteFile(filepath.Join(root, name), []byte("old"), 0o644)
		tmp := TempName(".vrift-tmp-", name)
		if len(tmp) > NameMax || tmp != TempName(".vrift-tmp-", name) {
			t.Fatalf("TempName(%d bytes) = %d bytes, or not stable", len(name), len(tmp))
		}
		// A temp left by an interrupted run is replaced.
		os.WriteFile(filepath.Join(root, tmp), []byte("stale"), 0o644)
		err := Replace(tr.FD(), name, ".vrift-tmp-", func(dirfd int, tmp string) error {
			return unix.Symlinkat("target", dirfd, tmp)
		})
		if err != nil {
			t.Fatalf("Replace %d-byte name: %v", len(name), err)
		}
		if got, _ := os.Readlink(filepath.Join(root, name)); got != "target" {
			t.Errorf("%d-byte name not replaced: %q", len(name), got)
		}
		if _, err := os.Lstat(filepath.Join(root, tmp)); err == nil {
			t.Errorf("temp %q left behind", tmp)
		}
	}
}

func TestCheckOwner(t *testing.T) {
	me := uint32(os.Geteuid())
	if err := CheckOwner("/x", me, false); err != nil {
		t.Errorf("own tree refused: %v", err)
	}
	if err := CheckOwner("/x", me+1, false); !errors.Is(err, ErrOtherOwner) {
		t.Errorf("other owner: %v, want ErrOtherOwner", err)
	}
	if err := CheckOwner("/x", me+1, true); err != nil {
		t.Errorf("allowed other owner refused: %v", err)
	}
}
