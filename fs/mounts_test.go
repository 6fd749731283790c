package fs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/errdefs"
)

// TestUnmountNotMounted: a directory that is not a mount point gets vrift's
// own answer whoever runs it (issue 24: as non-root it used to be
// fusermount3's "entry for ... not found in /etc/mtab", as root EINVAL's).
func TestUnmountNotMounted(t *testing.T) {
	dir := t.TempDir()
	if err := Unmount(dir); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Unmount of a plain directory: %v, want ErrNotMounted", err)
	}
	if err := Unmount(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Unmount of a missing path: %v, want ErrNotExist", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink("/", link)
	if err := Unmount(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("Unmount of a symlink: %v, want a refusal naming the symlink", err)
	}
}

// TestUnmountNotView: a mount point that is not a vrift view is left alone,
// as root too. Root's case uses a tmpfs of its own, so a regression would
// take down only that; the ordinary user's, / (fusermount3 could not).
func TestUnmountNotView(t *testing.T) {
	mp := "/"
	if os.Geteuid() == 0 {
		mp = t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "vrift-test", mp).CombinedOutput(); err != nil {
			if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
				t.Fatalf("mount a tmpfs as root: %v\n%s", err, out)
			}
			t.Skipf("cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", mp).Run() })
	}
	err := Unmount(mp)
	if !errors.Is(err, ErrNotView) {
		t.Fatalf("Unmount(%s): %v, want ErrNotView", mp, err)
	}
	if table, _ := mountTable(); !hasMountpoint(table, mp) {
		t.Fatalf("%s is no longer mounted", mp)
	}
}

func hasMountpoint(table []tableEntry, mp string) bool {
	for _, e := range table {
		if e.Mountpoint == mp {
			return true
		}
	}
	return false
}

// TestRefuseOthers: an ordinary user asking to unmount another user's view
// hears whose it is (fusermount3 would say it found no entry); root may.
func TestRefuseOthers(t *testing.T) {
	view := tableEntry{Mountpoint: "/x", FSType: FSType, Source: "/m", Owner: 1000}
	if err := refuseOthers(view, 1001); !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "mounted by uid 1000") {
		t.Errorf("another user's view: %v, want ErrPermission naming the uid", err)
	}
	for _, euid := range []int{1000, 0} {
		if err := refuseOthers(view, euid); err != nil {
			t.Errorf("uid %d refused: %v", euid, err)
		}
	}
	view.Owner = -1 // unknown: the helper decides
	if err := refuseOthers(view, 1001); err != nil {
		t.Errorf("view of unknown owner refused: %v", err)
	}
}

func TestHelperError(t *testing.T) {
	err := helperError("fusermount3", []byte("fusermount3: entry for /p not found in /etc/mtab\n"), errors.New("exit status 1"))
	if got, want := err.Error(), "fusermount3: entry for /p not found in /etc/mtab"; got != want {
		t.Errorf("helperError: %q, want %q (the tool named once)", got, want)
	}
	err = helperError("umount", nil, errors.New("exit status 1"))
	if got, want := err.Error(), "umount: exit status 1"; got != want {
		t.Errorf("helperError without output: %q, want %q", got, want)
	}
}

func TestTablePath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	os.Symlink(real, filepath.Join(dir, "via"))
	got, err := tablePath(filepath.Join(dir, "via", "mp"))
	want, _ := filepath.EvalSymlinks(real)
	if err != nil || got != filepath.Join(want, "mp") {
		t.Errorf("tablePath through a symlinked parent: %q %v, want %q", got, err, filepath.Join(want, "mp"))
	}
}
